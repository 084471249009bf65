// `/reports/`: the audits of docs/audits.md as HTML pages made on request from an observation of
// the hosts made for it (observation-cache.ts: requests that come together share one), and an
// index that links them with each audit's findings as the metrics last saw them. The page itself is the CLI's (`vfleet audit … --format html`), handed in by
// the command that starts the server: one self-contained page, no script, nothing fetched.
import type { FleetSession } from '../app/session.js';
import { AUDIT_KINDS, type AuditKind, type AuditReport, buildReport } from '../audit/report.js';
import { HttpError } from './http-error.js';
import type { FleetFigures, ObservationCache } from './observation-cache.js';

export const REPORTS_PATH = '/reports/';

export type ReportRenderer = (report: AuditReport) => string;

const TITLES: Record<AuditKind | 'all', string> = {
  licenses: 'License use per pool against the entitlement, and the hosts counted',
  patches: 'Patch levels per instance and host against their baselines',
  failover: 'Failover coverage per failure scenario, with the reserve per host',
  all: 'All three audits on one page',
};

function h(text: string | number): string {
  return String(text)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/** The page at `path` (under /reports/), as HTML. */
export async function reportPage(
  path: string,
  session: FleetSession,
  observations: ObservationCache,
  render: ReportRenderer,
): Promise<string> {
  const name = path.slice(REPORTS_PATH.length);
  if (name === '' || name === 'index.html') {
    // The findings as the metrics last saw them (a cheap page), renewed behind it when stale.
    const figures = await observations.latest(session);
    setImmediate(() => observations.refreshIfStale(session));
    return index(session, figures);
  }
  const kinds =
    name === 'all'
      ? AUDIT_KINDS
      : (AUDIT_KINDS as readonly string[]).includes(name)
        ? [name as AuditKind]
        : undefined;
  if (!kinds)
    throw new HttpError(404, `no report ${JSON.stringify(name.slice(0, 40))}: see ${REPORTS_PATH}`);
  const observation = await observations.fresh(session);
  return render(
    buildReport(kinds, observation.input, {
      generatedAt: new Date(observation.at).toISOString(),
      specHash: observation.specHash,
    }),
  );
}

function index(session: FleetSession, observation: FleetFigures): string {
  const summary = observation.summary;
  const findings: Record<AuditKind | 'all', number> = {
    licenses: summary.licenses?.findings ?? 0,
    patches: summary.patches?.findings ?? 0,
    failover: summary.failover?.findings ?? 0,
    all: summary.findings,
  };
  const rows = (['licenses', 'patches', 'failover', 'all'] as const)
    .map(
      (k) =>
        `<tr><td><a href="${k}">${k}</a></td><td>${h(TITLES[k])}</td><td class="${findings[k] > 0 ? 'bad' : 'ok'}">${findings[k]}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>vfleet reports: ${h(session.fleet.name)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111}
table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}
.bad{color:#dc2626;font-weight:600}.ok{color:#16a34a}small{color:#555}
</style></head><body>
<h1>Audit reports of fleet ${h(session.fleet.name)}</h1>
<p><small>Findings as observed ${h(new Date(observation.at).toISOString())} (spec ${h(observation.specHash.slice(0, 12))}); each report is made when it is opened, from the hosts as they are then.</small></p>
<table><thead><tr><th>report</th><th>what it shows</th><th>findings</th></tr></thead><tbody>
${rows}
</tbody></table>
<p><small>Also: the <a href="../queues">host queues</a> and the <a href="../metrics">metrics</a>.</small></p>
</body></html>
`;
}
