// A plan as GitHub-flavoured Markdown, for a pull request comment and $GITHUB_STEP_SUMMARY: the
// `Plan:` line first (what a reviewer reads before anything else), then what the change costs —
// hosts the plan could not see, licenses before → after, failover coverage, instances that do
// not fit — then the actions, one table per kind. A kind with more than FOLD_OVER actions folds
// behind its count, the way Atlantis folds a long plan. Every name goes through cell().
import type { Explanation } from '../../model/placement.js';
import { ACTION_SYMBOL, type ActionKind, type Plan, type PlanAction } from '../../model/plan.js';
import { deferralText } from '../../plan/rollouts.js';
import { cell, folded, htmlText, mdTable } from './markdown.js';
import { formatReasons } from './placement-view.js';

/** Longer lists fold behind their count. */
export const FOLD_OVER = 30;

/**
 * GitHub refuses a comment over 65,536 characters; the workflow adds a marker line to the body.
 * Past this, each list shows its first entries and how many more there are.
 */
export const MARKDOWN_BUDGET = 60_000;

/** The order a reviewer reads them in: what appears, what moves or changes, what goes. */
const KIND_ORDER: readonly ActionKind[] = [
  'create',
  'move',
  'update',
  'start',
  'retarget',
  'patch',
  'destroy',
];

const TITLE: Readonly<Record<ActionKind, string>> = {
  create: 'create',
  move: 'move',
  update: 'update (replace in place)',
  start: 'start',
  retarget: 'retarget (new failover host, keeps running)',
  patch: 'patch',
  destroy: 'destroy',
};

type Row = ReadonlyArray<string | number | null>;

/** Each kind's columns; reasons in words, as the text view has them. */
function columns(kind: ActionKind): { head: readonly string[]; row: (a: PlanAction) => Row } {
  switch (kind) {
    case 'create':
      return {
        head: ['Instance', 'Host', 'Failover host', 'Reason'],
        row: (a) => [a.instance, a.host, a.failoverHost, a.reason],
      };
    case 'move':
      return {
        head: ['Instance', 'From', 'To', 'Failover host', 'Reason'],
        row: (a) => [
          a.instance,
          a.fromHost,
          a.host,
          a.failoverHost,
          a.stopFirst ? `${a.reason} (stopped first: one of a swap)` : a.reason,
        ],
      };
    case 'patch':
      return {
        head: ['Instance', 'Host', 'Packages (installed → baseline)', 'Batch'],
        row: (a) => [
          a.instance,
          a.host,
          a.reason,
          `${a.batch ?? 1}${a.deferredUntil === undefined ? '' : ` (${deferralText(a.deferredUntil)})`}`,
        ],
      };
    default:
      return {
        head: ['Instance', 'Host', 'Reason'],
        row: (a) => [a.instance, a.host, a.reason],
      };
  }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * A list shown as a table, its first `limit` rows when it is longer, folded over FOLD_OVER behind
 * `title`; unfolded, under `title` as a heading when `headed`.
 */
function list(
  title: string,
  head: readonly string[],
  rows: readonly Row[],
  limit: number,
  more: string,
  headed = true,
): string {
  const shown = rows.slice(0, limit);
  const hidden = rows.length - shown.length;
  const body =
    mdTable(head, shown) + (hidden > 0 ? `\n\n… and ${hidden} more, not shown here: ${more}` : '');
  if (rows.length > FOLD_OVER) return folded(title, body);
  return headed ? `#### ${htmlText(title)}\n\n${body}` : body;
}

export interface PlanMarkdownOptions {
  /** What the plan could not see (hosts not ok, a host's facts against the spec). */
  readonly warnings?: readonly string[];
  /** `--explain`: every host's verdict for one instance. */
  readonly explanation?: { readonly instance: string; readonly of: Explanation | undefined };
  /** The most characters the document may take (default MARKDOWN_BUDGET). */
  readonly budget?: number;
}

export function renderPlanMarkdown(plan: Plan, options: PlanMarkdownOptions = {}): string {
  const budget = options.budget ?? MARKDOWN_BUDGET;
  // Whole lists while they fit; then fewer rows per list until the document does. At the last
  // limit every list (seven kinds, the unplaceable, the warnings, the explanation) has ten rows,
  // a few kilobytes; only the license table, one row per pool, is never cut.
  let text = '';
  for (const limit of [Number.POSITIVE_INFINITY, 1000, 300, 100, FOLD_OVER, 10]) {
    text = render(plan, options, limit);
    if (text.length <= budget) break;
  }
  return text;
}

function render(plan: Plan, options: PlanMarkdownOptions, limit: number): string {
  const out: string[] = [
    `## vfleet plan: fleet ${cell(plan.fleet)}${plan.destroy ? ' (destroy)' : ''}`,
    '',
  ];
  const s = plan.summary;
  if (plan.actions.length === 0) {
    out.push(
      plan.destroy
        ? `**No changes.** Nothing to destroy: fleet ${cell(plan.fleet)} has no instances.`
        : `**No changes.** Fleet ${cell(plan.fleet)} matches the spec.`,
    );
  } else {
    out.push(
      `**Plan: ${s.create} to create, ${s.move} to move, ${s.update} to update, ${s.patch} to patch, ${s.destroy} to destroy.**`,
    );
  }
  out.push('');
  const warnings = options.warnings ?? [];
  if (warnings.length > 0) {
    // GitHub shows this as a warning callout; elsewhere it is a plain quote.
    const hidden = warnings.length - Math.min(warnings.length, limit);
    out.push(
      '> [!WARNING]',
      ...warnings.slice(0, limit).map((w) => `> ${cell(w)}  `),
      ...(hidden > 0 ? [`> … and ${hidden} more warnings: \`vfleet plan\` prints them all`] : []),
      '',
    );
  }
  if (plan.licenses.length > 0) {
    out.push('### Licenses', '');
    out.push(
      mdTable(
        ['Pool', 'Metric', 'Before', 'After', 'Owned', 'Change', 'Status'],
        plan.licenses.map((l) => [
          l.pool,
          l.metric,
          l.before,
          l.after,
          l.entitlement,
          l.before === l.after
            ? 'unchanged'
            : `${l.after > l.before ? '+' : ''}${l.after - l.before}`,
          l.after > l.entitlement ? `❌ exceeds by ${l.after - l.entitlement}` : '✅',
        ]),
      ),
      '',
    );
  }
  const f = plan.failover;
  // A destroy plan leaves nothing to cover.
  if (f.tolerate > 0 && !plan.destroy) {
    out.push(
      '### Failover',
      '',
      `${f.covered === f.protected ? '✅' : '❌'} ${f.covered} of ${plural(f.protected, 'protected instance')} covered (any ${f.tolerate} ${cell(f.domain)} may fail).`,
      '',
    );
  }
  if (plan.withheld && plan.withheld.length > 0) {
    out.push(`### ⏸ Restarts held back`, '');
    for (const w of plan.withheld.slice(0, limit)) {
      out.push(`- \`${cell(w.instance)}\` (${cell(w.fromHost)} is down): ${cell(w.reason)}`);
    }
    if (plan.withheld.length > limit) out.push(`- … ${plan.withheld.length - limit} more`);
    out.push('');
  }
  if (plan.unplaceable.length > 0) {
    const n = plan.unplaceable.length;
    out.push(`### ❌ Cannot place ${plural(n, 'instance')}`, '');
    out.push(
      list(
        `${plural(n, 'instance')} without a host`,
        ['Instances', 'Group', 'Hosts ruled out, by reason'],
        unplaceableRuns(plan),
        limit,
        '`vfleet plan` lists them all',
        false,
      ),
      '',
    );
  }
  if (plan.actions.length > 0) {
    out.push('### Actions', '');
    for (const kind of KIND_ORDER) {
      const actions = plan.actions.filter((a) => a.kind === kind);
      if (actions.length === 0) continue;
      const { head, row } = columns(kind);
      out.push(
        list(
          `${ACTION_SYMBOL[kind]} ${TITLE[kind]}: ${plural(actions.length, 'instance')}`,
          head,
          actions.map(row),
          limit,
          '`vfleet plan` or `vfleet plan --json` lists every action',
        ),
        '',
      );
    }
  }
  const explained = options.explanation;
  if (explained) out.push(explanationSection(explained.instance, explained.of, limit), '');
  out.push(`<sub>plan ${cell(plan.id)}, spec \`${plan.specHash.slice(0, 12)}\`</sub>`);
  return `${out.join('\n').trimEnd()}\n`;
}

/**
 * Replicas of one group that fail for the same reasons are one row, as in the text view: a
 * group scaled far past the fleet's room would otherwise be a row per replica.
 */
function unplaceableRuns(plan: Plan): Row[] {
  const runs: Array<{ group: string; names: string[]; reasons: string }> = [];
  for (const u of plan.unplaceable) {
    const reasons = formatReasons(u.reasons);
    const last = runs[runs.length - 1];
    if (last && last.group === u.group && last.reasons === reasons) last.names.push(u.instance);
    else runs.push({ group: u.group, names: [u.instance], reasons });
  }
  return runs.map(({ group, names, reasons }) => [
    names.length === 1
      ? (names[0] as string)
      : `${names.length}: ${names[0]} … ${names[names.length - 1]}`,
    group,
    reasons,
  ]);
}

function explanationSection(instance: string, e: Explanation | undefined, limit: number): string {
  if (!e) return `### Explain ${cell(instance)}\n\nNo instance ${cell(instance)} in this fleet.`;
  const chosen = e.hosts.find((h) => h.chosen);
  const verdict = chosen ? `${e.kept ? 'stays on' : 'placed on'} ${chosen.host}` : 'not placed';
  const hidden = e.hosts.length - Math.min(e.hosts.length, limit);
  return folded(
    `Explain ${e.instance} (group ${e.group}, strategy ${e.strategy}): ${verdict}`,
    mdTable(
      ['Host', 'Verdict', 'Free after (MiB-eq)', 'License units'],
      e.hosts
        .slice(0, limit)
        .map((h) => [
          h.host,
          h.ok ? (h.chosen ? 'ok, chosen' : 'ok') : (h.reason ?? ''),
          h.freeAfter ?? null,
          h.licenseUnits ?? null,
        ]),
    ) +
      (hidden > 0
        ? `\n\n… and ${hidden} more hosts: \`vfleet plan --explain\` lists them all`
        : ''),
  );
}
