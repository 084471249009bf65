// How `vfleet controller` and `vfleet worker` say where their HTTP server listens (--http): the
// bound address (port 0 asks for any free one), as a line or, with --json, a JSON line.
import { jsonDocument } from './json.js';

const ENDPOINTS = '/metrics, /healthz, /readyz, /queues, /reports/';

export function httpListeningLine(who: string, url: string, writable: boolean): string {
  return `${who}: serving ${url} (${ENDPOINTS}; the queue board ${writable ? 'may change jobs' : 'is read-only'})`;
}

export function httpListeningJson(url: string, writable: boolean): string {
  return jsonDocument({ type: 'http-listening', url, queuesWritable: writable });
}
