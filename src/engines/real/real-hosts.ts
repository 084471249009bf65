// The builders of engine-set.ts's rows for real hosts (`engine: local` and `engine: ssh`): each
// host's RealEngine over its transport, every command within the time limit. A module of its own
// so that a fleet without real hosts never loads the drivers and transports (QEMU, sandboxes,
// ssh): engine-set.ts imports it only when the fleet has a real host.
import type { Host } from '../../model/fleet.js';
import { withCommandTimeout } from '../../transport/command-limits.js';
import { LocalTransport } from '../../transport/local-transport.js';
import { SshTransport } from '../../transport/ssh-transport.js';
import type { Transport } from '../../transport/transport.js';
import type { HostEngine } from '../host-engine.js';
import { RealEngine, type RealEngineOptions } from './real-engine.js';

export interface RealHostContext {
  readonly commandTimeoutMs: number;
  readonly real: RealEngineOptions;
  /** Every transport made, closed with the engine set. */
  readonly transports: Transport[];
}

/** A real host over the given transport, every command of it within the time limit. */
function realEngine(host: Host, transport: Transport, ctx: RealHostContext): HostEngine {
  const limited = withCommandTimeout(transport, ctx.commandTimeoutMs);
  ctx.transports.push(limited);
  return new RealEngine(host, limited, ctx.real);
}

export const localEngine = (host: Host, ctx: RealHostContext): HostEngine =>
  realEngine(host, new LocalTransport(host.name), ctx);

export const sshEngine = (host: Host, ctx: RealHostContext): HostEngine =>
  realEngine(host, new SshTransport(host), ctx);
