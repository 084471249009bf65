// A VM's guest as vfleet reaches it (docs/patching.md, "VMs over SSH"): a VM whose image gives
// `guest` gets QEMU's user-mode network with restrict=on — the guest reaches nothing of the
// outside but the image's forwards, each to a port on its host's 127.0.0.1 (guestfwd, through a
// fixed helper per connection) — and its
// sshd forwarded to a loopback port of the host that QEMU picks (`hostfwd=tcp:127.0.0.1:0-:22`,
// read back from `info usernet`, so two VMs never race for one). vfleet reaches that port
// through the host's own transport (Transport.connectLoopbackPort: a local connect, or ssh's
// direct-tcpip) and speaks ssh over it with ssh2, the guest's host key pinned and the image's
// identity file: the same transport as a host's, one level down.
import { createHash } from 'node:crypto';
import { VfleetError } from '../../model/errors.js';
import type { GuestAccess } from '../../model/fleet.js';
import { SshTransport } from '../../transport/ssh-transport.js';
import type { Transport } from '../../transport/transport.js';
import { type InstanceRoot, ROOT_ENV } from './apt-patch.js';
import { installHostScript } from './host-helper.js';
import type { DriverContext, InstanceRecord } from './instance-driver.js';
import { qmp } from './qmp-client.js';

/** Where a guest finds its forwards: QEMU's user network's spare address. */
export const GUEST_FORWARD_ADDRESS = '10.0.2.100';

/** The guest access create recorded for a VM (`record.driver.guest`), if its image gave one. */
export function guestOf(record: InstanceRecord): GuestAccess | undefined {
  return record.driver.guest as GuestAccess | undefined;
}

/**
 * A guest's connection to a forward, carried to 127.0.0.1:PORT on the host: QEMU runs it once
 * per connection (`guestfwd=…-cmd:`), the connection as its stdin and stdout. (A `tcp:` chardev
 * instead is ONE connection, made when QEMU starts and shared by every guest connection in
 * turn: the first server that closes — an HTTP/1.0 answer, a keep-alive timeout — leaves the
 * forward dead.) Perl's core sockets because perl-base is Essential on Debian: no netcat or
 * socat to install. Fixed text: the port is its one argument, checked.
 */
export const GUESTFWD_SCRIPT = `#!/bin/sh
# vfleet-guestfwd, format 1. Usage: vfleet-guestfwd PORT (QEMU's guestfwd cmd:, one connection)
# See src/engines/real/qemu-guest.ts.
exec perl -e '
use strict; use warnings; use IO::Socket::INET; use IO::Select;
my $port = $ARGV[0] // "";
exit 2 unless $port =~ /\\A[0-9]{1,5}\\z/;
my $peer = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Proto => "tcp") or exit 1;
my $select = IO::Select->new(\\*STDIN, $peer);
for (;;) {
  for my $from ($select->can_read) {
    my $n = sysread($from, my $buffer, 65536);
    my $up = fileno($from) == fileno($peer);
    if (!$n) {
      exit 0 if $up;
      $select->remove($from);
      shutdown($peer, 1);
      next;
    }
    my $to = $up ? \\*STDOUT : $peer;
    for (my $at = 0; $at < $n;) {
      my $wrote = syswrite($to, $buffer, $n - $at, $at);
      exit 1 unless defined $wrote;
      $at += $wrote;
    }
  }
}' "$@"
`;

export const GUESTFWD_SHA256 = createHash('sha256').update(GUESTFWD_SCRIPT).digest('hex');

/** Where the forward helper is on the host (installHostScript's name for it). */
export function guestfwdHelper(ctx: DriverContext): string {
  return `${ctx.layout.bin}/vfleet-guestfwd-${GUESTFWD_SHA256.slice(0, 16)}.sh`;
}

/** Puts the forward helper on the host when the VM has forwards (before QEMU starts). */
export async function installGuestfwdHelper(ctx: DriverContext, record: InstanceRecord) {
  if (!guestOf(record)?.forwards.length) return;
  const path = await installHostScript(
    ctx.t,
    ctx.layout.bin,
    'vfleet-guestfwd',
    GUESTFWD_SCRIPT,
    GUESTFWD_SHA256,
    'guest forward helper',
  );
  // QEMU's command line names it before it is installed (commandLine is synchronous).
  if (path !== guestfwdHelper(ctx)) {
    throw new VfleetError('helper-corrupt', `${ctx.host}: the guest forward helper is at ${path}`);
  }
}

/** QEMU's -nic for a VM: none, or the restricted user network with the guest's forwards. */
export function networkArgs(ctx: DriverContext, guest: GuestAccess | undefined): string[] {
  if (guest === undefined) return ['-nic', 'none'];
  const options = [
    'user',
    'model=virtio-net-pci',
    'restrict=on',
    `hostfwd=tcp:127.0.0.1:0-:${guest.port}`,
    ...guest.forwards.map(
      (f) =>
        `guestfwd=tcp:${GUEST_FORWARD_ADDRESS}:${f.port}-cmd:/bin/sh ${guestfwdHelper(ctx)} ${f.hostPort}`,
    ),
  ];
  return ['-nic', options.join(',')];
}

/** The loopback port QEMU forwards to the guest's sshd, from QMP's `info usernet`. */
export async function forwardedPort(
  ctx: DriverContext,
  guest: GuestAccess,
  timeoutMs: number,
): Promise<number> {
  const table = await hmp(ctx, 'info usernet', timeoutMs);
  // "  TCP[HOST_FORWARD]  12       127.0.0.1 36703       10.0.2.15    22     0     0"
  for (const line of table.split('\n')) {
    const m = /^\s*TCP\[HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+\S+\s+(\d+)\s/.exec(line);
    if (m && Number(m[2]) === guest.port) return Number(m[1]);
  }
  throw new VfleetError(
    'guest-unreachable',
    `${ctx.host}: ${ctx.instance}: QEMU forwards no port to the guest's sshd (port ${guest.port})`,
    { retryable: true },
  );
}

/** An ssh transport into the guest, through its host's transport; the caller closes it. */
export function guestTransport(
  ctx: DriverContext,
  guest: GuestAccess,
  port: number,
  readyTimeoutMs: number,
): SshTransport {
  return new SshTransport(
    {
      name: `${ctx.host}/${ctx.instance}`,
      ssh: {
        address: '127.0.0.1',
        port,
        user: guest.user,
        hostKey: guest.hostKey,
        identityFile: guest.identityFile,
      },
    },
    {
      openSocket: () => ctx.t.connectLoopbackPort(port),
      readyTimeoutMs,
      keepaliveIntervalMs: 5_000,
    },
  );
}

/** Errors that waiting longer does not cure: a wrong key on either side. */
const FINAL = new Set(['host-key-mismatch', 'ssh-auth-failed', 'identity-unreadable']);

/**
 * Polls until the guest's sshd answers a command (a booting guest refuses, or does not answer,
 * until it does), within `timeoutMs`; returns the transport, open. A wrong host key or login
 * fails at once.
 */
export async function reachGuest(
  ctx: DriverContext,
  guest: GuestAccess,
  timeoutMs: number,
): Promise<SshTransport> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    let t: SshTransport | undefined;
    try {
      const port = await forwardedPort(ctx, guest, Math.min(left, 10_000));
      t = guestTransport(ctx, guest, port, Math.max(1_000, Math.min(left, 15_000)));
      const probe = await t.exec(['true'], { timeoutMs: Math.max(1_000, left) });
      if (probe.code === 0) return t;
      last = new Error(`true exited with ${probe.code}`);
    } catch (e) {
      last = e;
      if (e instanceof VfleetError && FINAL.has(e.code)) {
        await t?.close();
        throw e;
      }
    }
    await t?.close();
    await new Promise((resolve) => setTimeout(resolve, Math.min(500, Math.max(0, left))));
  }
  throw new VfleetError(
    'guest-unreachable',
    `${ctx.host}: ${ctx.instance}: the guest's sshd did not answer within ${Math.round(timeoutMs / 1000)} s (${last instanceof Error ? last.message : String(last)})`,
    { retryable: true },
  );
}

/** The guest as apt-patch.ts patches it: a booted system, whose services restart themselves. */
export function guestRoot(ctx: DriverContext, t: Transport, guest: GuestAccess): InstanceRoot {
  const sudo = guest.user === 'root' ? [] : ['sudo', '-n', '--'];
  return {
    host: ctx.host,
    instance: ctx.instance,
    startsServices: true,
    exec: (argv, options) =>
      t.exec([...sudo, 'env', '-i', ...ROOT_ENV, ...argv], { timeoutMs: options.timeoutMs }),
  };
}

/** The name of the internal snapshot a patch with rollback takes (and drops after). */
export const PATCH_SNAPSHOT = 'vfleet-pre-patch';

/** A human monitor (HMP) command through QMP, and what it printed. */
async function hmp(ctx: DriverContext, line: string, timeoutMs: number): Promise<string> {
  const args = { 'command-line': line };
  return String(await qmp(ctx.t, `${ctx.dir}/qmp.sock`, 'human-monitor-command', args, timeoutMs));
}

/**
 * `savevm`, `loadvm`, `delvm` (no synchronous QMP form in the QEMU this targets): HMP reports
 * their errors as text, so any output is the failure's words.
 */
export async function snapshotCommand(
  ctx: DriverContext,
  line: string,
  timeoutMs: number,
): Promise<void> {
  const said = (await hmp(ctx, line, timeoutMs)).trim();
  if (said !== '') {
    throw new VfleetError(
      'snapshot-failed',
      `${ctx.host}: ${ctx.instance}: ${line}: ${said.replace(/\s+/g, ' ').slice(0, 400)}`,
    );
  }
}
