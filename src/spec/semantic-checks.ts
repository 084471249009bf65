// Layer 3: what the schema cannot say — names are unique, references resolve, replicas keep
// valid names, every image can run somewhere, ssh hosts are pinned, failure domains exist.
// Runs only on a document that passed the schema, so it may trust shapes and types.

import type { DiagnosticCode, Severity } from '../model/diagnostic.js';
import {
  ENGINE_CAPABILITIES,
  enginesReading,
  HOST_FIELDS,
  type HostField,
} from '../model/engine-capabilities.js';
import { HOST_DOMAIN, osMatches, replicaName } from '../model/fleet.js';
import type { FleetDocument, Host, InstanceGroup } from '../model/fleet-spec.generated.js';
import { didYouMean } from './did-you-mean.js';
import { DEFAULTS } from './normalize.js';
import { checkPatching } from './patching-checks.js';
import { checkReplication } from './replication-checks.js';
import { quoteValue } from './spec-path.js';
import type { PathSegment } from './yaml-document.js';

export interface SemanticProblem {
  readonly severity: Severity;
  readonly code: DiagnosticCode;
  readonly message: string;
  readonly path: readonly PathSegment[];
  readonly at: 'key' | 'value';
}

const HOST_METRICS = new Set(['host-core', 'host-socket-pair', 'host']);

type Section = 'hosts' | 'images' | 'licenses' | 'patchBaselines' | 'instances';
const NOUN: Record<Section, string> = {
  hosts: 'host',
  images: 'image',
  licenses: 'license pool',
  patchBaselines: 'patch baseline',
  instances: 'instance group',
};

/**
 * `broken` names the items the schema rejected (`hosts/3`, `failover`): they take part only by
 * name, so a reference to a host with a bad cpu block is not also reported as unknown, and
 * nothing reads a field whose shape the schema did not vouch for.
 */
/** What a host that lacks a field its engine needs is told it needs. */
const NEEDED: Readonly<Record<HostField, string>> = {
  address: 'an address',
  port: 'a port',
  user: 'a user',
  hostKey:
    'a pinned hostKey (its "ssh-ed25519 AAAA..." public key or SHA256 fingerprint); vfleet never trusts an unknown key',
  identityFile: 'an identityFile',
  dataDir: 'a dataDir',
};

export function checkSemantics(
  doc: FleetDocument,
  broken: ReadonlySet<string> = new Set(),
): SemanticProblem[] {
  const problems: SemanticProblem[] = [];
  const ok = (section: Section, i: number) => !broken.has(`${section}/${i}`);
  const error = (
    code: DiagnosticCode,
    message: string,
    path: PathSegment[],
    at: 'key' | 'value' = 'value',
  ) => problems.push({ severity: 'error', code, message, path, at });
  const warn = (
    code: DiagnosticCode,
    message: string,
    path: PathSegment[],
    at: 'key' | 'value' = 'value',
  ) => problems.push({ severity: 'warning', code, message, path, at });

  const spec = doc.spec;
  const hosts = spec.hosts;
  const images = spec.images;
  const licenses = spec.licenses ?? [];
  const baselines = spec.patchBaselines ?? [];
  const groups = spec.instances ?? [];

  // Unique names per kind; the first one wins, later ones are reported where they stand.
  const indexOf = <T extends { name: string }>(section: Section, items: readonly T[]) => {
    const byName = new Map<string, number>();
    items.forEach((item, i) => {
      if (!ok(section, i) && typeof (item as { name?: unknown } | null)?.name !== 'string') return;
      const first = byName.get(item.name);
      if (first === undefined) byName.set(item.name, i);
      else
        error(
          'duplicate-name',
          `${NOUN[section]} name ${quoteValue(item.name)} is already used by spec.${section}[${first}]`,
          ['spec', section, i, 'name'],
        );
    });
    return byName;
  };
  indexOf('hosts', hosts);
  const imageByName = indexOf('images', images);
  const poolByName = indexOf('licenses', licenses);
  const baselineByName = indexOf('patchBaselines', baselines);
  const groupByName = indexOf('instances', groups);

  const reference = (
    section: Section,
    known: Map<string, number>,
    name: string,
    path: PathSegment[],
  ): boolean => {
    if (known.has(name)) return true;
    error(
      'unknown-reference',
      `no ${NOUN[section]} is named ${quoteValue(name)}${didYouMean(name, known.keys())}`,
      path,
    );
    return false;
  };

  // Checks that something exists on *some* host would be guesses while a host is malformed;
  // they wait until the hosts pass the schema.
  const hostsTrusted = hosts.every((_, h) => ok('hosts', h));
  const labelKeys = new Set<string>();
  hosts.forEach((host, h) => {
    if (ok('hosts', h)) for (const key of Object.keys(host.labels ?? {})) labelKeys.add(key);
  });

  // Hosts: the fields their engine needs set (an ssh endpoint pinned), those it does not read
  // warned about (model/engine-capabilities.ts says which), host-metric licenses only.
  hosts.forEach((host, h) => {
    if (!ok('hosts', h)) return;
    const engine = host.engine ?? DEFAULTS.engine;
    const reads = ENGINE_CAPABILITIES[engine];
    for (const key of reads.requiredHostFields) {
      if (host[key] === undefined) {
        error('ssh-endpoint', `${engine} host ${quoteValue(host.name)} needs ${NEEDED[key]}`, [
          'spec',
          'hosts',
          h,
        ]);
      }
    }
    for (const key of HOST_FIELDS) {
      if (host[key] === undefined || reads.hostFields.includes(key)) continue;
      const why =
        key === 'dataDir'
          ? `whose instances live ${reads.keepsInstances}`
          : `not ${enginesReading(key).join(' or ')}`;
      warn(
        'ssh-endpoint',
        `${key} is ignored: host ${quoteValue(host.name)} uses the ${engine} engine, ${why}`,
        ['spec', 'hosts', h, key],
        'key',
      );
    }
    if (host.patchBaseline !== undefined) {
      reference('patchBaselines', baselineByName, host.patchBaseline, [
        'spec',
        'hosts',
        h,
        'patchBaseline',
      ]);
    }
    (host.licenses ?? []).forEach((pool, j) => {
      const path: PathSegment[] = ['spec', 'hosts', h, 'licenses', j];
      if (!reference('licenses', poolByName, pool, path)) return;
      const p = poolByName.get(pool) as number;
      const metric = ok('licenses', p) ? licenses[p]?.metric : undefined;
      if (metric && !HOST_METRICS.has(metric)) {
        error(
          'license-metric-mismatch',
          `license pool ${quoteValue(pool)} counts per ${metric}; only host-core, host-socket-pair and host pools are assigned to hosts`,
          path,
        );
      }
    });
  });

  // Images: runnable somewhere, sources that fit the kind, pools that exist.
  images.forEach((image, i) => {
    if (!ok('images', i)) return;
    const runners = hosts.filter((host, h) => ok('hosts', h) && host.runs.includes(image.kind));
    if (!hostsTrusted) {
      // judged once the hosts are well formed
    } else if (runners.length === 0) {
      error(
        'unrunnable-image',
        `no host runs ${image.kind === 'vm' ? 'VMs' : 'containers'}, so image ${quoteValue(image.name)} cannot run anywhere (add "${image.kind}" to a host's runs)`,
        ['spec', 'images', i, 'kind'],
      );
    } else if (
      image.kind === 'vm' &&
      !image.allowEmulation &&
      !runners.some((host) => host.os.arch === image.os.arch)
    ) {
      warn(
        'unrunnable-image',
        `VM image ${quoteValue(image.name)} is ${image.os.arch}, and no host that runs VMs is; set allowEmulation: true to run it under QEMU's emulation`,
        ['spec', 'images', i, 'os', 'arch'],
      );
    } else if (
      image.kind === 'container' &&
      !runners.some((host) => sharesKernel(host, image.os))
    ) {
      warn(
        'unrunnable-image',
        `container image ${quoteValue(image.name)} needs a host running ${image.os.family} ${image.os.release} on ${image.os.arch} (containers share the host's kernel); no host that runs containers does`,
        ['spec', 'images', i, 'os'],
      );
    }
    const source = image.source;
    if (source) {
      const misplaced =
        image.kind === 'container'
          ? (['disk', 'kernel', 'initrd', 'cmdline'] as const).filter(
              (k) => source[k] !== undefined,
            )
          : (['rootfs'] as const).filter((k) => source[k] !== undefined);
      for (const key of misplaced) {
        error(
          'schema',
          `source.${key} does not apply to a ${image.kind} image`,
          ['spec', 'images', i, 'source', key],
          'key',
        );
      }
      if (image.kind === 'container' && source.rootfs === undefined) {
        error('missing-key', `container image ${quoteValue(image.name)} needs source.rootfs`, [
          'spec',
          'images',
          i,
          'source',
        ]);
      }
      if (image.kind === 'vm' && source.disk === undefined && source.kernel === undefined) {
        error(
          'missing-key',
          `VM image ${quoteValue(image.name)} needs source.disk or source.kernel`,
          ['spec', 'images', i, 'source'],
        );
      }
      if (image.kind === 'vm' && source.kernel === undefined) {
        for (const key of ['initrd', 'cmdline'] as const) {
          if (source[key] !== undefined) {
            error(
              'schema',
              `source.${key} needs source.kernel`,
              ['spec', 'images', i, 'source', key],
              'key',
            );
          }
        }
      }
    }
    if (image.kind === 'container' && image.guest !== undefined) {
      // A sandbox is patched from its host, in its rootfs: there is no guest to log into.
      error(
        'schema',
        'guest does not apply to a container image',
        ['spec', 'images', i, 'guest'],
        'key',
      );
    }
    (image.licenses ?? []).forEach((pool, j) => {
      reference('licenses', poolByName, pool, ['spec', 'images', i, 'licenses', j]);
    });
  });

  // License pools: fields that only mean something for one metric.
  licenses.forEach((pool, p) => {
    if (!ok('licenses', p)) return;
    const onlyFor: Array<[keyof typeof pool, string]> = [
      ['minimumPerHost', 'host-core'],
      ['minimumPerProcessor', 'host-core'],
      ['minimumPerInstance', 'instance-vcpu'],
    ];
    for (const [key, metric] of onlyFor) {
      if (pool[key] !== undefined && pool.metric !== metric) {
        warn(
          'license-metric-mismatch',
          `${key} only applies to ${metric} pools; pool ${quoteValue(pool.name)} counts per ${pool.metric}`,
          ['spec', 'licenses', p, key],
          'key',
        );
      }
    }
  });

  // Instance groups.
  groups.forEach((group, g) => {
    if (!ok('instances', g)) return;
    const at = (...rest: PathSegment[]): PathSegment[] => ['spec', 'instances', g, ...rest];
    const replicas = group.replicas ?? 1;
    if (replicas > 0) {
      const last = replicaName(group.name, replicas - 1);
      if (last.length > 63) {
        error(
          'replica-name-too-long',
          `replica name ${quoteValue(last, 80)} is ${last.length} characters; a DNS label has at most 63 (shorten the group name to ${63 - (last.length - group.name.length)})`,
          at('name'),
        );
      }
    }
    const imageIndex = imageByName.get(group.image);
    reference('images', imageByName, group.image, at('image'));
    if (group.patchBaseline !== undefined) {
      if (reference('patchBaselines', baselineByName, group.patchBaseline, at('patchBaseline'))) {
        const b = baselineByName.get(group.patchBaseline) as number;
        const baseline = ok('patchBaselines', b) ? baselines[b] : undefined;
        const image =
          imageIndex === undefined || !ok('images', imageIndex) ? undefined : images[imageIndex];
        if (baseline && image && !osMatches(baseline.appliesTo, image.os)) {
          warn(
            'baseline-mismatch',
            `patch baseline ${quoteValue(baseline.name)} applies to ${describeOs(baseline.appliesTo)}, but image ${quoteValue(image.name)} is ${describeOs(image.os)}; its instances will be not-applicable`,
            at('patchBaseline'),
          );
        }
      }
    }
    (group.licenses ?? []).forEach((pool, j) => {
      reference('licenses', poolByName, pool, at('licenses', j));
    });
    const placement = group.placement ?? {};
    (placement.avoid ?? []).forEach((other, j) => {
      reference('instances', groupByName, other, at('placement', 'avoid', j));
    });
    if (hostsTrusted && placement.spread !== undefined && !labelKeys.has(placement.spread)) {
      error(
        'unknown-spread-label',
        `no host carries the label ${quoteValue(placement.spread)} to spread over${didYouMean(placement.spread, labelKeys)}`,
        at('placement', 'spread'),
      );
    }
    const required = Object.entries(placement.requireLabels ?? {});
    if (
      hostsTrusted &&
      required.length > 0 &&
      !hosts.some((host, h) => ok('hosts', h) && hasLabels(host, required))
    ) {
      warn(
        'unsatisfiable-labels',
        `no host carries all of ${required.map(([k, v]) => `${k}=${v}`).join(', ')}; group ${quoteValue(group.name)} cannot be placed`,
        at('placement', 'requireLabels'),
      );
    }
  });

  if (hostsTrusted && !broken.has('failover')) checkFailover(doc, groups, broken, error);
  checkReplication(doc, broken, error, warn);
  checkPatching(doc, broken, error, warn);
  return problems;
}

function checkFailover(
  doc: FleetDocument,
  groups: readonly InstanceGroup[],
  broken: ReadonlySet<string>,
  error: (code: DiagnosticCode, message: string, path: PathSegment[], at?: 'key' | 'value') => void,
): void {
  const policy = doc.spec.failover;
  if (!policy) return;
  const domain = policy.domain ?? HOST_DOMAIN;
  const tolerate = policy.tolerate ?? 1;
  if (tolerate > 1) {
    error(
      'unsupported-tolerance',
      `failover.tolerate ${tolerate} is not supported yet: vfleet reserves standby capacity for one failed ${domain} at a time (tolerate: 1); surviving ${tolerate} at once needs a plan for every combination of ${tolerate} domains (see docs/scheduler.md)`,
      ['spec', 'failover', 'tolerate'],
    );
  }
  // A host the schema rejected may lack labels; judge domains by the hosts that are well formed.
  const hosts = doc.spec.hosts.filter((_, h) => !broken.has(`hosts/${h}`));
  let domains: Set<string>;
  if (domain === HOST_DOMAIN) {
    domains = new Set(hosts.map((h) => h.name));
  } else {
    const carriers = hosts.filter((h) => h.labels?.[domain] !== undefined);
    if (carriers.length === 0) {
      const keys = new Set(hosts.flatMap((h) => Object.keys(h.labels ?? {})));
      error(
        'unknown-domain',
        `no host carries the label ${quoteValue(domain)} that spec.failover.domain names${didYouMean(domain, [HOST_DOMAIN, ...keys])} (use "host" to make every host its own domain)`,
        ['spec', 'failover', 'domain'],
      );
      return;
    }
    doc.spec.hosts.forEach((host, h) => {
      if (!broken.has(`hosts/${h}`) && host.labels?.[domain] === undefined) {
        error(
          'unknown-domain',
          `host ${quoteValue(host.name)} has no ${quoteValue(domain)} label, but spec.failover.domain puts every host in a ${domain}`,
          ['spec', 'hosts', h],
        );
      }
    });
    domains = new Set(carriers.map((h) => h.labels?.[domain] as string));
  }
  const noun = domain === HOST_DOMAIN ? 'host' : domain;
  const protectedGroups = groups.some((g) => g?.failover !== undefined && g.failover !== false);
  if (tolerate > 0 && protectedGroups && domains.size <= tolerate) {
    error(
      'unknown-domain',
      `failover tolerates ${tolerate} failed ${noun}${tolerate === 1 ? '' : 's'}, but the fleet has only ${domains.size} ${noun}${domains.size === 1 ? '' : 's'}; nothing would be left to fail over to`,
      ['spec', 'failover', 'tolerate'],
    );
  }
}

function sharesKernel(host: Host, os: { family: string; release: string; arch: string }): boolean {
  return host.os.family === os.family && host.os.release === os.release && host.os.arch === os.arch;
}

function hasLabels(host: Host, required: Array<[string, string]>): boolean {
  return required.every(([k, v]) => host.labels?.[k] === v);
}

function describeOs(os: { family: string; release?: string; arch?: string }): string {
  return [os.family, os.release, os.arch].filter((p) => p !== undefined).join(' ');
}
