// The HTML audit report in a real browser: Debian's Chromium, headless, takes a screenshot, and
// the test measures the charts in it — the bars' lengths must be the report's numbers. The page
// must also be self-contained: nothing it could fetch, no script.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, describe, it } from 'node:test';
import { PNG } from 'pngjs';
import { plannedInput } from '../../src/audit/audit-input.js';
import { buildReport } from '../../src/audit/report.js';
import { CHART_COLOURS, renderAuditHtml } from '../../src/cli/views/audit/html.js';
import { schedule } from '../../src/scheduler/schedule.js';
import { rootFleet } from '../helpers/root-fleet.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const dir = mkdtempSync(`${tmpdir()}/vfleet-html-`);

/** Renders a page with headless Chromium as the CI machine has it, and returns the PNG. */
function screenshot(html: string, name: string): PNG {
  const page = `${dir}/${name}.html`;
  const png = `${dir}/${name}.png`;
  writeFileSync(page, html);
  const r = spawnSync(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--hide-scrollbars',
      '--force-device-scale-factor=1',
      `--user-data-dir=${dir}/profile-${name}`,
      '--window-size=1200,1400',
      `--screenshot=${png}`,
      `file://${page}`,
    ],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(r.status, 0, `chromium failed: ${r.stderr.slice(-2000)}`);
  return PNG.sync.read(readFileSync(png));
}

/** The longest horizontal run of exactly this colour, in pixels. */
function longestRun(image: PNG, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => Number.parseInt(hex.slice(i, i + 2), 16));
  let best = 0;
  for (let y = 0; y < image.height; y++) {
    let run = 0;
    for (let x = 0; x < image.width; x++) {
      const i = (y * image.width + x) * 4;
      if (image.data[i] === r && image.data[i + 1] === g && image.data[i + 2] === b) {
        run++;
        best = Math.max(best, run);
      } else run = 0;
    }
  }
  return best;
}

describe('the HTML audit report in headless Chromium', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));
  const fleet = rootFleet();
  const placement = schedule(fleet);
  const meta = { generatedAt: '2023-11-14T22:13:20.000Z', specHash: 'f'.repeat(64) };

  it('is self-contained: a CSP of default-src none, no script, nothing to fetch', () => {
    const html = renderAuditHtml(
      buildReport(['licenses', 'patches', 'failover'], plannedInput(fleet, placement), meta),
    );
    assert.match(
      html,
      /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">/,
    );
    assert.doesNotMatch(html, /<script|<link|<img|<iframe|\bsrc=|\bhref=|url\(|@import/i);
    // The only URL is the SVG namespace, which is a name, not a fetch.
    assert.deepEqual(
      [...new Set(html.match(/https?:\/\/[^\s"'<>]+/g) ?? [])],
      ['http://www.w3.org/2000/svg'],
    );
  });

  it('draws patch compliance per baseline to scale (24 of 30 compliant)', () => {
    const report = buildReport(['patches'], plannedInput(fleet, placement), meta);
    const image = screenshot(renderAuditHtml(report), 'patches');
    const b = report.patches?.baselines[0];
    assert.ok(b && b.compliant === 24 && b.nonCompliant === 6);
    const green = longestRun(image, CHART_COLOURS.compliant);
    const orange = longestRun(image, CHART_COLOURS.nonCompliant);
    // 520 px for 30 subjects: 416 and 104, give or take a pixel of rounding.
    assert.ok(Math.abs(green - 416) <= 2, `compliant bar is ${green} px`);
    assert.ok(Math.abs(orange - 104) <= 2, `non-compliant bar is ${orange} px`);
  });

  it('draws license use per pool, and a shortfall in red beyond the entitlement', () => {
    const short = {
      ...fleet,
      licenses: fleet.licenses.map((p) =>
        p.name === 'windows-datacenter' ? { ...p, entitlement: 16 } : p,
      ),
    };
    const report = buildReport(['licenses'], plannedInput(short, placement), meta);
    const pool = report.licenses?.pools.find((p) => p.pool === 'windows-datacenter');
    assert.deepEqual([pool?.used, pool?.entitlement, pool?.shortfall], [32, 16, 16]);
    const image = screenshot(renderAuditHtml(report), 'licenses');
    // Scaled to 32 units: 16 used within the entitlement (260 px), 16 short (260 px) in red.
    const blue = longestRun(image, CHART_COLOURS.used);
    const red = longestRun(image, CHART_COLOURS.shortfall);
    assert.ok(Math.abs(blue - 260) <= 2, `used bar is ${blue} px`);
    assert.ok(Math.abs(red - 260) <= 2, `shortfall bar is ${red} px`);
    // The compliant report has no red bar at all: red only in the legend's swatch (~11 px).
    const fine = screenshot(
      renderAuditHtml(buildReport(['licenses'], plannedInput(fleet, placement), meta)),
      'fine',
    );
    const swatch = longestRun(fine, CHART_COLOURS.shortfall);
    assert.ok(swatch > 0 && swatch < 20, `longest red run ${swatch} px`);
  });
});
