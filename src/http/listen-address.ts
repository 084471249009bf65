// `--http HOST:PORT`: where the HTTP server listens, and whether that is loopback only — the one
// case in which it may serve without credentials (src/http/basic-auth.ts). The rule is by
// address, decided before anything is bound: 127.0.0.0/8, ::1 and `localhost` are loopback;
// everything else (0.0.0.0, ::, a LAN address, a host name) may be reached from elsewhere.
import { isIP } from 'node:net';
import { VfleetError } from '../model/errors.js';

export interface ListenAddress {
  /** As given, without brackets: `127.0.0.1`, `::1`, `localhost`, `0.0.0.0`. */
  readonly host: string;
  /** 0: any free port (the bound one is printed). */
  readonly port: number;
}

const usage = (given: string, why: string) =>
  new VfleetError(
    'usage',
    `--http takes HOST:PORT (127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464), not ${JSON.stringify(given.slice(0, 80))}: ${why}`,
  );

export function parseListenAddress(given: string): ListenAddress {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(given);
  const plain = /^([^:[\]]+):(\d+)$/.exec(given);
  const match = bracketed ?? plain;
  if (!match) throw usage(given, 'a host and a port, separated by a colon (IPv6 in brackets)');
  const host = match[1] as string;
  const port = Number(match[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw usage(given, 'the port is 0 to 65535');
  if (bracketed && isIP(host) !== 6) throw usage(given, 'brackets hold an IPv6 address');
  if (!isIP(host) && !/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$/.test(host))
    throw usage(given, 'the host is an IP address or a host name');
  return { host, port };
}

/** Whether only this machine can reach an address: 127.0.0.0/8, ::1, ::ffff:127.x, localhost. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.split('.')[0] === '127';
}

/** `host:port` as a URL authority (IPv6 in brackets). */
export function formatAddress(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
