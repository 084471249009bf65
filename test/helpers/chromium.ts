// Debian's headless Chromium, as a person's browser would open a page this machine serves: a
// screenshot (decoded with pngjs) and the DOM after the page's scripts ran. Every host name but
// 127.0.0.1 resolves to nothing, so a page that would fetch from the internet (a web font) cannot,
// and the test never sends traffic off this machine.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { PNG } from 'pngjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

function chromium(profile: string, args: readonly string[]): string {
  const r = spawnSync(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--hide-scrollbars',
      '--force-device-scale-factor=1',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
      // Scripts run and their fetches settle before the screenshot or the dump (virtual time).
      '--virtual-time-budget=10000',
      `--user-data-dir=${profile}`,
      ...args,
    ],
    { encoding: 'utf8', timeout: 90_000, maxBuffer: 64 * 1024 * 1024 },
  );
  if (r.status !== 0) throw new Error(`chromium failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

/** A screenshot of `url` at `width`×`height`, written to `file` and decoded. */
export function screenshot(url: string, file: string, width: number, height: number): PNG {
  chromium(`${file}.profile`, [`--window-size=${width},${height}`, `--screenshot=${file}`, url]);
  return PNG.sync.read(readFileSync(file));
}

/** The DOM of `url` once its scripts ran, as HTML. */
export function dumpDom(url: string, profile: string): string {
  return chromium(profile, ['--dump-dom', url]);
}

/** How many distinct colours a picture has: a blank page has one or two. */
export function colours(image: PNG): number {
  const seen = new Set<number>();
  for (let i = 0; i < image.data.length; i += 4)
    seen.add(
      ((image.data[i] ?? 0) << 16) | ((image.data[i + 1] ?? 0) << 8) | (image.data[i + 2] ?? 0),
    );
  return seen.size;
}

/** The share of pixels that differ from the top-left one (the page's background). */
export function inked(image: PNG): number {
  const [r, g, b] = [image.data[0], image.data[1], image.data[2]];
  let n = 0;
  for (let i = 0; i < image.data.length; i += 4)
    if (image.data[i] !== r || image.data[i + 1] !== g || image.data[i + 2] !== b) n++;
  return n / (image.width * image.height);
}
