// How `vfleet controller` and `vfleet worker` say where their HTTP server listens (--http): the
// bound address (port 0 asks for any free one), as a line or, with --json, a JSON line.
import { jsonDocument } from './json.js';

const ENDPOINTS = '/metrics, /healthz, /readyz, /queues, /reports/';

export function httpListeningLine(
  who: string,
  url: string,
  writable: boolean,
  webhook = false,
): string {
  const endpoints = webhook ? `${ENDPOINTS}, POST /hooks/git` : ENDPOINTS;
  return `${who}: serving ${url} (${endpoints}; the queue board ${writable ? 'may change jobs' : 'is read-only'})`;
}

export function httpListeningJson(url: string, writable: boolean, webhook = false): string {
  return jsonDocument({
    type: 'http-listening',
    url,
    queuesWritable: writable,
    ...(webhook ? { webhook: `${url}/hooks/git` } : {}),
  });
}
