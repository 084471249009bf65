// How `vfleet down` says what it did.
import type { DownResult } from '../../app/down.js';

export function renderDownText(result: DownResult): string {
  switch (result.kind) {
    case 'stopped':
      return `Stopped the private redis-server${result.pid === null ? '' : ` (pid ${result.pid})`}; its data stays in ${result.dir} for the next command.\n`;
    case 'nothing-running':
      return 'Nothing to stop: no private redis-server is running for this folder.\n';
    case 'external':
      return 'Nothing to stop: REDIS_URL is set, so vfleet uses that Redis server and did not start it.\n';
  }
}
