// `vfleet host patch`: its waves shown like a plan, each step as it goes, and its end.
import type { HostRollout, HostWave } from '../../plan/host-rollout.js';

export function hostRolloutText(
  rollout: Extract<HostRollout, { ok: true }>,
  tolerate: number,
  domain: string,
): string {
  const hosts = rollout.waves.reduce((n, w) => n + w.hosts.length, 0);
  const lines = [
    `vfleet will patch ${hosts} host(s) in ${rollout.waves.length} wave(s): drain (what runs there moves off), patch and reboot, undrain, wait until healthy.`,
    `At most ${rollout.maxDomainsPerWave} failure domain(s) (${domain}) at a time: failover tolerates ${tolerate}.`,
    '',
  ];
  rollout.waves.forEach((w, i) => {
    lines.push(
      `  wave ${i + 1}: ${w.hosts.join(', ')}  (${domainWords(w, domain)}; ${w.holdsNow} instance(s) there now; failover ${w.covered} of ${w.protected} covered meanwhile)`,
    );
  });
  return lines.join('\n');
}

function domainWords(wave: HostWave, domain: string): string {
  return domain === 'host'
    ? `${wave.hosts.length} host(s)`
    : `${domain} ${wave.domains.join(', ')}`;
}

export function refusedRolloutText(host: string, unplaceable: readonly string[]): string {
  return `vfleet: cannot patch ${host}: with it drained, the other hosts cannot place ${unplaceable.join(', ')}; nothing was drained.`;
}

/** Where the hosts of a stopped wave were left. */
export type LeftAs = 'undrained' | 'drained' | 'unhealthy';

export function waveFailedText(
  wave: number,
  hosts: readonly string[],
  step: string,
  left: LeftAs,
): string {
  const words = {
    undrained: `${hosts.join(', ')} not drained`,
    drained: `${hosts.join(', ')} left drained (\`vfleet host undrain NAME\` ends it)`,
    unhealthy: `${hosts.join(', ')} undrained but not healthy`,
  }[left];
  return `vfleet: wave ${wave} stopped at ${step}; ${words}. Later waves were not started.`;
}
