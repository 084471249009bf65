// `vfleet audit licenses|patches|failover|all`: the reports an auditor asks for, from the
// observed state (Redis) or, with --planned, from the spec and its placement alone (no Redis).
// Exit 0 when the gated audits have no findings, 2 when they do, 1 on error.
import { renameSync, writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { auditObserved, auditPlanned } from '../../app/audit.js';
import { AUDIT_KINDS, type AuditKind, type AuditReport, exitCodeOf } from '../../audit/report.js';
import { VfleetError } from '../../model/errors.js';
import { readSpecOrReport, withSession } from '../open-session.js';
import { appendStepSummary, stepSummaryFile } from '../step-summary.js';
import type { Terminal } from '../terminal.js';
import { renderAuditCsv } from '../views/audit/csv.js';
import { renderAuditHtml } from '../views/audit/html.js';
import { renderAuditJunit } from '../views/audit/junit.js';
import { renderAuditMarkdown } from '../views/audit/markdown.js';
import { renderAuditText } from '../views/audit/text.js';

export const AUDIT_FORMATS = ['text', 'md', 'json', 'csv', 'html', 'junit'] as const;
export type AuditFormat = (typeof AUDIT_FORMATS)[number];

export interface AuditArgs {
  readonly kinds: readonly AuditKind[];
  readonly file: string;
  readonly planned: boolean;
  readonly format: AuditFormat;
  readonly out: string | undefined;
  readonly failOn: readonly AuditKind[];
  /** Also append the Markdown report to $GITHUB_STEP_SUMMARY. */
  readonly stepSummary?: boolean;
}

/** When the report was made: SOURCE_DATE_EPOCH (reproducible builds) if set, else now. */
export function reportClock(env: NodeJS.ProcessEnv, now: () => number = Date.now): string {
  const epoch = env.SOURCE_DATE_EPOCH;
  if (epoch === undefined || epoch === '') return new Date(now()).toISOString();
  if (!/^\d{1,12}$/.test(epoch)) {
    throw new VfleetError(
      'bad-source-date-epoch',
      `SOURCE_DATE_EPOCH must be a whole number of seconds since 1970-01-01 UTC, not ${JSON.stringify(epoch.slice(0, 40))}`,
    );
  }
  return new Date(Number(epoch) * 1000).toISOString();
}

export function renderAudit(report: AuditReport, format: AuditFormat): string {
  switch (format) {
    case 'text':
      return renderAuditText(report);
    case 'md':
      return renderAuditMarkdown(report);
    case 'json':
      return `${JSON.stringify(report, null, 2)}\n`;
    case 'csv':
      return renderAuditCsv(report);
    case 'html':
      return renderAuditHtml(report);
    case 'junit':
      return renderAuditJunit(report);
  }
}

export async function runAudit(
  args: AuditArgs,
  terminal: Terminal,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const generatedAt = reportClock(env);
  const summaryFile = args.stepSummary ? stepSummaryFile(env) : undefined;
  if (args.format === 'csv' && args.kinds.length !== 1) {
    throw new VfleetError(
      'csv-one-audit',
      'CSV holds one table: run one audit (licenses, patches or failover) with --format csv',
    );
  }
  let report: AuditReport;
  if (args.planned) {
    const spec = readSpecOrReport(args.file, terminal);
    if (!spec) return 1;
    report = auditPlanned(spec, args.kinds, generatedAt);
  } else {
    let observed: AuditReport | undefined;
    const opened = await withSession(args.file, terminal, async (session) => {
      observed = await auditObserved(session, args.kinds, generatedAt);
      return 0;
    });
    if (!observed) return opened;
    report = observed;
  }
  const text = renderAudit(report, args.format);
  if (args.out) {
    const temporary = `${args.out}.vfleet-tmp-${process.pid}`;
    writeFileSync(temporary, text);
    renameSync(temporary, args.out);
    terminal.out(
      `Wrote the ${report.kinds.join(', ')} audit (${args.format}) to ${args.out}: ${report.findings.length} finding${report.findings.length === 1 ? '' : 's'}.`,
    );
  } else terminal.out(text);
  if (summaryFile !== undefined) appendStepSummary(summaryFile, renderAuditMarkdown(report));
  return exitCodeOf(report, args.failOn);
}

function parseKinds(value: string, what: string, allowNone: boolean): AuditKind[] {
  if (allowNone && value === 'none') return [];
  const kinds = value.split(',').map((k) => k.trim());
  for (const k of kinds) {
    if (!(AUDIT_KINDS as readonly string[]).includes(k)) {
      throw new VfleetError(
        'bad-audit-kind',
        `${what}: ${JSON.stringify(k)} is not an audit; use ${AUDIT_KINDS.join(', ')}${allowNone ? ' (comma-separated) or none' : ' or all'}`,
      );
    }
  }
  return kinds as AuditKind[];
}

export function auditCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('audit')
    .description(
      'license, patch and failover reports from the observed state, or --planned from the spec',
    )
    .argument('<audit>', `what to audit: ${AUDIT_KINDS.join(', ')} or all`)
    .argument('[file]', 'the fleet spec (same as -f)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--planned', 'audit the spec as vfleet would place it, without Redis', false)
    .addOption(
      new Option('--format <format>', 'the report format').choices(AUDIT_FORMATS).default('text'),
    )
    .option('--out <file>', 'write the report to a file instead of standard output')
    .option('--step-summary', 'also append the Markdown report to $GITHUB_STEP_SUMMARY', false)
    .option(
      '--fail-on <audits>',
      'exit 2 only for findings of these audits (comma-separated, or none); default: every audit run',
    )
    .action(
      async (
        audit: string,
        file: string | undefined,
        o: {
          file: string;
          planned: boolean;
          format: AuditFormat;
          out?: string;
          failOn?: string;
          stepSummary: boolean;
        },
      ) => {
        const kinds = audit === 'all' ? [...AUDIT_KINDS] : parseKinds(audit, 'vfleet audit', false);
        const failOn = o.failOn === undefined ? kinds : parseKinds(o.failOn, '--fail-on', true);
        setExit(
          await runAudit(
            {
              kinds,
              file: file ?? o.file,
              planned: o.planned,
              format: o.format,
              out: o.out,
              failOn,
              stepSummary: o.stepSummary,
            },
            terminal,
          ),
        );
      },
    );
}
