// The audit report as one self-contained HTML page: inline CSS and inline SVG charts, no script,
// nothing fetched (a Content-Security-Policy of default-src 'none' says so to the browser). Made
// to be attached to an audit, opened from a CI artifact, or printed.

import { type AuditReport, describeFinding } from '../../../audit/report.js';
import { revisionLine } from '../../../model/source.js';
import { type AuditTable, failoverTables, licenseTables, patchTables } from './tables.js';

/** The chart colours; the screenshot test counts pixels of exactly these. */
export const CHART_COLOURS = {
  used: '#2563eb',
  failover: '#93c5fd',
  shortfall: '#dc2626',
  compliant: '#16a34a',
  nonCompliant: '#ea580c',
  notApplicable: '#9ca3af',
} as const;

function h(text: string | number | null | undefined): string {
  return String(text ?? '–')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function htmlTable(t: AuditTable, level = 'h3'): string {
  if (t.rows.length === 0) return '';
  const body = t.rows
    .map(
      (r) =>
        `<tr>${r
          .map((v, i) =>
            i === t.statusColumn ? `<td class="s-${h(v)}">${h(v)}</td>` : `<td>${h(v)}</td>`,
          )
          .join('')}</tr>`,
    )
    .join('\n');
  return `<${level}>${h(t.title)}</${level}>\n<table><thead><tr>${t.head.map((x) => `<th>${h(x)}</th>`).join('')}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

const BAR = { label: 190, width: 520, height: 22, gap: 12 };

interface Segment {
  readonly value: number;
  readonly colour: string;
  readonly title: string;
}

/** Horizontal stacked bars, one per row, scaled to the largest total (or a marker). */
function barChart(
  title: string,
  rows: ReadonlyArray<{
    label: string;
    segments: readonly Segment[];
    marker?: number;
    note: string;
  }>,
): string {
  const scale = Math.max(
    1,
    ...rows.map((r) =>
      Math.max(
        r.marker ?? 0,
        r.segments.reduce((n, s) => n + s.value, 0),
      ),
    ),
  );
  const height = rows.length * (BAR.height + BAR.gap) + BAR.gap;
  const width = BAR.label + BAR.width + 170;
  const bars = rows.map((r, i) => {
    const y = BAR.gap + i * (BAR.height + BAR.gap);
    let x = BAR.label;
    const rects = r.segments
      .filter((s) => s.value > 0)
      .map((s) => {
        const w = Math.max(1, Math.round((s.value / scale) * BAR.width));
        const rect = `<rect x="${x}" y="${y}" width="${w}" height="${BAR.height}" fill="${s.colour}" shape-rendering="crispEdges"><title>${h(s.title)}</title></rect>`;
        x += w;
        return rect;
      })
      .join('');
    const marker =
      r.marker === undefined
        ? ''
        : `<line x1="${BAR.label + Math.round((r.marker / scale) * BAR.width)}" x2="${BAR.label + Math.round((r.marker / scale) * BAR.width)}" y1="${y - 4}" y2="${y + BAR.height + 4}" stroke="#111827" stroke-width="2" shape-rendering="crispEdges"/>`;
    return `<text x="${BAR.label - 8}" y="${y + 16}" text-anchor="end">${h(r.label)}</text><rect x="${BAR.label}" y="${y}" width="${BAR.width}" height="${BAR.height}" fill="#f3f4f6" shape-rendering="crispEdges"/>${rects}${marker}<text x="${BAR.label + BAR.width + 8}" y="${y + 16}">${h(r.note)}</text>`;
  });
  return `<figure><figcaption>${h(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="${h(title)}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="13">${bars.join('')}</svg></figure>`;
}

function legend(items: ReadonlyArray<[string, string]>): string {
  return `<p class="legend">${items.map(([c, t]) => `<span><i style="background:${c}"></i>${h(t)}</span>`).join(' ')}</p>`;
}

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#111827;margin:2rem auto;max-width:1100px;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.2rem;margin:2rem 0 .5rem;border-bottom:1px solid #e5e7eb;padding-bottom:.25rem}
.meta{color:#4b5563;margin:0 0 1rem}.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:.75rem 1rem;min-width:200px}.card b{display:block;font-size:1.1rem}
.ok{border-left:6px solid ${CHART_COLOURS.compliant}}.bad{border-left:6px solid ${CHART_COLOURS.shortfall}}
table{border-collapse:collapse;margin:.5rem 0 1rem;width:100%}th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #e5e7eb;font-variant-numeric:tabular-nums}
th{background:#f9fafb}.s-shortfall,.s-non-compliant,.s-outdated,.s-missing,.s-not-covered,.s-no-failover-host,.s-over-capacity,.s-same-domain,.s-unknown-host,.s-failover-host-down,.s-host-down{color:#b91c1c;font-weight:600}
.s-compliant,.s-covered{color:#15803d}figure{margin:.5rem 0}figcaption{font-weight:600;margin-bottom:.25rem}
.legend span{margin-right:1rem}.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:-1px}
ul.findings li{color:#991b1b}
@media print{body{margin:0}}`;

export function renderAuditHtml(report: AuditReport): string {
  const s = report.summary;
  const cards: string[] = [];
  if (s.licenses)
    cards.push(
      card(
        s.licenses.shortfall === 0,
        'Licenses',
        `${s.licenses.compliant} of ${s.licenses.pools} pools compliant`,
      ),
    );
  if (s.patches)
    cards.push(
      card(
        s.patches.findings === 0,
        'Patches',
        `${s.patches.compliant} of ${s.patches.subjects} subjects compliant`,
      ),
    );
  if (s.failover)
    cards.push(
      card(
        s.failover.covered === s.failover.protected,
        'Failover',
        `${s.failover.covered} of ${s.failover.protected} protected instances covered`,
      ),
    );
  const parts: string[] = [
    `<h1>vfleet audit — ${h(report.fleet)}</h1>`,
    `<p class="meta">${h(report.source)} · generated ${h(report.generatedAt)} · spec sha256 <code>${h(report.specHash)}</code>${report.revision ? ` · source <code>${h(revisionLine(report.revision))}</code>` : ''}</p>`,
    `<div class="cards">${cards.join('')}</div>`,
  ];
  parts.push(`<h2>Findings (${report.findings.length})</h2>`);
  parts.push(
    report.findings.length === 0
      ? '<p>No findings.</p>'
      : `<ul class="findings">${report.findings.map((f) => `<li>${h(describeFinding(f))}</li>`).join('')}</ul>`,
  );
  const l = report.licenses;
  if (l) {
    parts.push('<h2>Licenses</h2>');
    parts.push(
      barChart(
        'License use per pool (units; the line is the entitlement)',
        l.pools.map((p) => ({
          label: p.pool,
          marker: p.entitlement,
          note: `${p.needed} / ${p.entitlement}`,
          segments: [
            {
              value: Math.min(p.used, p.entitlement),
              colour: CHART_COLOURS.used,
              title: `${p.used} used`,
            },
            {
              value: Math.max(0, Math.min(p.needed, p.entitlement) - p.used),
              colour: CHART_COLOURS.failover,
              title: `${p.needed - p.used} for failover targets`,
            },
            { value: p.shortfall, colour: CHART_COLOURS.shortfall, title: `${p.shortfall} short` },
          ],
        })),
      ),
    );
    parts.push(
      legend([
        [CHART_COLOURS.used, 'used by running instances'],
        [CHART_COLOURS.failover, 'needed for failover targets'],
        [CHART_COLOURS.shortfall, 'beyond the entitlement'],
      ]),
    );
    for (const t of licenseTables(report)) parts.push(htmlTable(t));
  }
  const p = report.patches;
  if (p) {
    parts.push('<h2>Patches</h2>');
    parts.push(
      barChart(
        'Patch compliance per baseline (subjects)',
        p.baselines.map((b) => ({
          label: b.baseline,
          note: `${b.compliant} / ${b.subjects - b.notApplicable} compliant`,
          segments: [
            {
              value: b.compliant,
              colour: CHART_COLOURS.compliant,
              title: `${b.compliant} compliant`,
            },
            {
              value: b.nonCompliant,
              colour: CHART_COLOURS.nonCompliant,
              title: `${b.nonCompliant} below the baseline`,
            },
            {
              value: b.notApplicable,
              colour: CHART_COLOURS.notApplicable,
              title: `${b.notApplicable} not applicable`,
            },
          ],
        })),
      ),
    );
    parts.push(
      legend([
        [CHART_COLOURS.compliant, 'compliant'],
        [CHART_COLOURS.nonCompliant, 'below the baseline'],
        [CHART_COLOURS.notApplicable, 'not applicable'],
      ]),
    );
    for (const t of patchTables(report).slice(1)) parts.push(htmlTable(t));
  }
  const f = report.failover;
  if (f) {
    parts.push('<h2>Failover</h2>');
    if (f.tolerate === 0)
      parts.push('<p>Not configured: <code>spec.failover.tolerate</code> is 0.</p>');
    else {
      parts.push(
        `<p>Any ${f.tolerate} ${h(f.domain)} may fail: ${f.covered} of ${f.protected} protected instances have a working failover host.</p>`,
      );
      for (const t of failoverTables(report)) parts.push(htmlTable(t));
    }
  }
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>vfleet audit — ${h(report.fleet)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    ...parts,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

function card(ok: boolean, title: string, text: string): string {
  return `<div class="card ${ok ? 'ok' : 'bad'}"><b>${ok ? '✔' : '✘'} ${h(title)}</b>${h(text)}</div>`;
}
