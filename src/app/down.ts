// Down: stop the folder's private redis-server (its AOF flushed first, its data kept). A Redis
// named by REDIS_URL is not vfleet's to stop. Refused while a live apply holds a fleet lock on
// it, unless forced.
import { stopEmbeddedRedis } from '../state/redis-server.js';

export type DownResult =
  | { readonly kind: 'external' }
  | { readonly kind: 'stopped'; readonly pid: number | null; readonly dir: string }
  | { readonly kind: 'nothing-running'; readonly dir: string };

export async function downPrivateRedis(options: {
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  readonly force: boolean;
  readonly debug?: (message: string) => void;
}): Promise<DownResult> {
  if ((options.env.REDIS_URL ?? '').trim() !== '') return { kind: 'external' };
  const outcome = await stopEmbeddedRedis(options.cwd, {
    debug: options.debug,
    force: options.force,
  });
  return outcome.stopped
    ? { kind: 'stopped', pid: outcome.pid, dir: outcome.paths.dir }
    : { kind: 'nothing-running', dir: outcome.paths.dir };
}
