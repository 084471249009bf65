// Patching an instance with APT: its own package manager, in its own root, against the apt
// sources its root has (docs/patching.md). Where the root is does not matter here: an
// `InstanceRoot` runs a program inside it — a sandbox's rootfs through chroot in namespaces of
// its own (sandbox-patch.ts), a VM's guest over ssh (qemu-guest.ts, vm-patch.ts). The steps:
//
//   1. dpkg-query: what is installed, so a package already at or above its minimum is left alone;
//   2. apt-get update (--error-on=any: an unreachable mirror fails, it is not a quiet no-op);
//   3. apt-get -s install name=version …: what would change (patching/apt-simulation.ts); a
//      removal or a downgrade is refused before anything is installed;
//   4. apt-get install -y --no-install-recommends name=version …: exactly the baseline's versions,
//      never a newer candidate, noninteractive, conffiles kept as the admin left them
//      (--force-confdef, --force-confold), waiting a bounded time for dpkg's lock;
//   5. /var/run/reboot-required, and dpkg-query again: what changed is what dpkg says changed.
//
// A dpkg that an earlier patch left interrupted (killed at its time limit) is finished first
// (`dpkg --configure -a`, as apt asks) when the install says so.
//
// Every step has its own time limit. Every value is one argument of an argument vector (never a
// shell's text), and every name and version is checked against Debian's syntax first.
import { VfleetError } from '../../model/errors.js';
import type { PackageVersions } from '../../model/fleet.js';
import type { PackageChange } from '../../model/instances.js';
import { parseAptSimulation } from '../../patching/apt-simulation.js';
import { isDebianPackageName, isDebianVersion } from '../../patching/debian-syntax.js';
import { compareDebianVersions } from '../../patching/debian-version.js';
import { parseInventory } from '../../patching/inventory.js';
import type { ExecResult } from '../../transport/transport.js';

/** Where a patch runs: the root of one instance, with its own dpkg database and apt sources. */
export interface InstanceRoot {
  readonly host: string;
  readonly instance: string;
  /**
   * Whether maintainer scripts may start services there. A booted VM: yes. A sandbox's root
   * patched from outside: no — a service started from the chroot would run outside the
   * sandbox, so policy-rc.d denies every start while the patch runs.
   */
  readonly startsServices: boolean;
  /** Runs `argv` inside the root, in the environment ROOT_ENV says, killed past `timeoutMs`. */
  exec(argv: readonly string[], options: { readonly timeoutMs: number }): Promise<ExecResult>;
}

/** The environment a root's programs get: nothing of vfleet's own, C messages, no questions. */
export const ROOT_ENV: readonly string[] = [
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'HOME=/root',
  'LC_ALL=C',
  'DEBIAN_FRONTEND=noninteractive',
  'APT_LISTCHANGES_FRONTEND=none',
];

export interface AptLimits {
  /** apt-get update. Default 120 s. */
  readonly updateMs: number;
  /** dpkg-query, the simulation, the reboot check. Default 60 s. */
  readonly queryMs: number;
  /** apt-get install (downloads and dpkg). Default 10 min (VFLEET_PATCH_TIMEOUT_MS). */
  readonly installMs: number;
}

export const DEFAULT_APT_LIMITS: AptLimits = {
  updateMs: 120_000,
  queryMs: 60_000,
  installMs: 600_000,
};

export interface AptPatchResult {
  readonly outcome: 'patched' | 'unchanged';
  /** What dpkg reports changed. */
  readonly changed: readonly PackageChange[];
  readonly rebootRequired: boolean;
  /** The installed packages after, as dpkg reports them. */
  readonly packages: PackageVersions;
}

/** apt's options for every step: a lock held by someone else is waited for, not a failure. */
const APT_OPTIONS = [
  '-q',
  '-o',
  'DPkg::Lock::Timeout=60',
  '-o',
  'Acquire::Retries=1',
  '-o',
  'Acquire::http::Timeout=30',
];

/** dpkg asks nothing: a conffile the admin changed is kept, the package's version set aside. */
const DPKG_OPTIONS = [
  '-o',
  'Dpkg::Options::=--force-confdef',
  '-o',
  'Dpkg::Options::=--force-confold',
];

/**
 * While the command runs, `/usr/sbin/policy-rc.d` answers 101 (Debian's "action not allowed")
 * to invoke-rc.d and deb-systemd-invoke, so no maintainer script starts a service; removed after
 * unless it was the root's own. One left by a patch that was killed is recognised by its marker
 * line and taken back. Fixed text: every value comes as an argument ("$@"), never parsed.
 */
export const NO_SERVICE_STARTS = `policy=/usr/sbin/policy-rc.d
mark='# vfleet: no service starts while vfleet patches this root (removed after)'
ours=
if { [ ! -e "$policy" ] && [ ! -L "$policy" ]; } || { [ -f "$policy" ] && grep -qxF "$mark" "$policy"; }; then
  printf '#!/bin/sh\\n%s\\nexit 101\\n' "$mark" >"$policy.vfleet"
  chmod 0755 "$policy.vfleet"
  mv -f "$policy.vfleet" "$policy"
  ours=1
fi
status=0
"$@" || status=$?
if [ -n "$ours" ]; then rm -f "$policy"; fi
exit "$status"`;

/** The checks every patch request passes before anything runs: Debian's syntax, and some. */
export function checkPatchPackages(where: string, packages: PackageVersions): void {
  const entries = Object.entries(packages ?? {});
  if (entries.length > 1000) {
    throw new VfleetError('invalid-request', `${where}: more than 1,000 packages in one patch`);
  }
  for (const [name, version] of entries) {
    if (!isDebianPackageName(name)) {
      throw new VfleetError(
        'invalid-request',
        `${where}: ${JSON.stringify(String(name).slice(0, 80))} is not a Debian package name`,
      );
    }
    if (!isDebianVersion(version)) {
      throw new VfleetError(
        'invalid-request',
        `${where}: ${JSON.stringify(String(version).slice(0, 80))} (for ${name}) is not a Debian version`,
      );
    }
  }
}

/**
 * Raises `packages` to exactly the given versions in the root; throws `patch-failed` and co.
 * `beforeInstall` runs once the simulation has shown what will change, right before anything
 * is (a VM's snapshot for a rollback: vm-patch.ts).
 */
export async function aptPatch(
  root: InstanceRoot,
  packages: PackageVersions,
  limits: AptLimits = DEFAULT_APT_LIMITS,
  beforeInstall?: () => Promise<void>,
): Promise<AptPatchResult> {
  const where = `${root.host}: ${root.instance}`;
  checkPatchPackages(where, packages);
  const before = await dpkgInventory(root, limits);
  const wanted = Object.entries(packages)
    .filter(([name, version]) => !atLeast(before, name, version))
    .sort(([a], [b]) => (a < b ? -1 : 1));
  if (wanted.length === 0) {
    return {
      outcome: 'unchanged',
      changed: [],
      rebootRequired: await rebootRequired(root, limits),
      packages: before,
    };
  }
  const pins = wanted.map(([name, version]) => `${name}=${version}`);

  const update = await root.exec(['apt-get', ...APT_OPTIONS, '--error-on=any', 'update'], {
    timeoutMs: limits.updateMs,
  });
  if (update.code !== 0) {
    // A mirror that does not answer now may answer later: the job is retried.
    throw new VfleetError(
      'apt-update-failed',
      `${where}: apt-get update exited with ${update.code}: ${outputTail(update)}`,
      { retryable: true },
    );
  }

  const simulated = await simulate(root, pins, limits);
  if (simulated.code !== 0) throw failed(where, 'apt-get -s install', simulated);
  const plan = parseAptSimulation(simulated.stdout.toString('utf8'));
  if (plan.removals.length > 0 || plan.downgrades.length > 0) {
    const what = [
      ...plan.removals.map((r) => `remove ${r.package}`),
      ...plan.downgrades.map((d) => `downgrade ${d.package} ${d.from} → ${d.to}`),
    ];
    throw new VfleetError(
      'patch-refused',
      `${where}: installing ${pins.join(' ')} would ${what.join(', ')}; vfleet only raises versions, so nothing was installed`,
    );
  }

  await beforeInstall?.();
  const installing = [
    'apt-get',
    ...APT_OPTIONS,
    ...DPKG_OPTIONS,
    '-y',
    '--no-install-recommends',
    'install',
    ...pins,
  ];
  let install = await guarded(root, installing, limits.installMs);
  if (install.code !== 0 && INTERRUPTED.test(outputOf(install))) {
    // An earlier patch was killed halfway (a time limit), and apt (which only checks when it
    // takes dpkg's lock, not when it simulates) says so: dpkg finishes it first, as apt asks.
    const configure = await guarded(
      root,
      ['dpkg', '--force-confdef', '--force-confold', '--configure', '-a'],
      limits.installMs,
    );
    if (configure.code !== 0) throw failed(where, 'dpkg --configure -a', configure);
    install = await guarded(root, installing, limits.installMs);
  }
  if (install.code !== 0) throw failed(where, 'apt-get install', install);

  const after = await dpkgInventory(root, limits);
  const short = wanted.filter(([name, version]) => !atLeast(after, name, version));
  if (short.length > 0) {
    throw new VfleetError(
      'patch-failed',
      `${where}: apt-get install succeeded but dpkg reports ${short.map(([n]) => `${n} at ${after[n] ?? 'not installed'}`).join(', ')}`,
    );
  }
  return {
    outcome: 'patched',
    changed: changes(before, after),
    rebootRequired: await rebootRequired(root, limits),
    packages: after,
  };
}

/** apt's words when dpkg was interrupted (apt-pkg/deb/debsystem.cc). */
const INTERRUPTED = /dpkg was interrupted, you must manually run 'dpkg --configure -a'/;

function simulate(root: InstanceRoot, pins: readonly string[], limits: AptLimits) {
  return root.exec(
    ['apt-get', ...APT_OPTIONS, '-s', '--no-install-recommends', 'install', ...pins],
    { timeoutMs: limits.queryMs },
  );
}

/** Runs a dpkg-changing command with service starts denied where the root runs none of its own. */
function guarded(root: InstanceRoot, argv: readonly string[], timeoutMs: number) {
  return root.exec(
    root.startsServices ? argv : ['/bin/sh', '-c', NO_SERVICE_STARTS, 'vfleet-patch', ...argv],
    { timeoutMs },
  );
}

/** The root's installed packages, as its own dpkg reports them. */
export async function dpkgInventory(
  root: InstanceRoot,
  limits: Pick<AptLimits, 'queryMs'> = DEFAULT_APT_LIMITS,
): Promise<PackageVersions> {
  const result = await root.exec(
    [
      'dpkg-query',
      '-W',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format, not a template
      '-f=${db:Status-Status}\\t${binary:Package}\\t${Version}\\n',
    ],
    { timeoutMs: limits.queryMs },
  );
  if (result.code !== 0) {
    throw new VfleetError(
      'patch-failed',
      `${root.host}: ${root.instance}: dpkg-query exited with ${result.code}: ${outputTail(result)}`,
    );
  }
  return inventoryOf(result.stdout.toString('utf8'), `${root.host}:${root.instance}`);
}

/**
 * `dpkg-query -W` lists every package the database knows, also removed ones whose conffiles
 * remain and ones left unconfigured by a failed maintainer script: only `installed` ones count.
 * The rest is the inventory format patching/inventory.ts reads.
 */
export function inventoryOf(output: string, where: string): PackageVersions {
  const lines = output
    .split('\n')
    .filter((line) => line.startsWith('installed\t'))
    .map((line) => line.slice('installed\t'.length));
  const { packages, diagnostics } = parseInventory(lines.join('\n'), where);
  if (diagnostics.length > 0) {
    throw new VfleetError(
      'inventory-invalid',
      `${where}: ${diagnostics.map((d) => `line ${d.line}: ${d.message}`).join('; ')}`,
    );
  }
  return packages;
}

async function rebootRequired(root: InstanceRoot, limits: AptLimits): Promise<boolean> {
  // Inside the root: /var/run is a link to /run there, which the host must not follow.
  const test = await root.exec(['test', '-e', '/var/run/reboot-required'], {
    timeoutMs: limits.queryMs,
  });
  return test.code === 0;
}

/** Whether `name` is installed at `version` or above (`libc6` matches `libc6:amd64`). */
function atLeast(installed: PackageVersions, name: string, version: string): boolean {
  const have =
    installed[name] ?? Object.entries(installed).find(([key]) => key.startsWith(`${name}:`))?.[1];
  return have !== undefined && compareDebianVersions(have, version) >= 0;
}

/** Every package whose version differs between two inventories, by name. */
export function changes(before: PackageVersions, after: PackageVersions): PackageChange[] {
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  const changed: PackageChange[] = [];
  for (const name of names) {
    const from = before[name] ?? null;
    const to = after[name] ?? null;
    if (from !== to) changed.push({ package: name, from, to });
  }
  return changed;
}

function failed(where: string, what: string, result: ExecResult): VfleetError {
  // Not retried: a maintainer script that failed, or a version the mirror lacks, fails again.
  return new VfleetError(
    'patch-failed',
    `${where}: ${what} exited with ${result.code}: ${outputTail(result)}`,
  );
}

function outputOf(result: ExecResult): string {
  return `${result.stdout.toString('utf8')}\n${result.stderr.toString('utf8')}`;
}

/**
 * Lines that say nothing about a failure: apt's and dpkg's progress, and what a root without
 * apt-utils or a terminal says every time.
 */
const NOISE = [
  /^debconf: delaying package configuration/,
  /^E: Can not write log \(Is \/dev\/pts mounted\?\)/,
  /^(Reading package lists|Building dependency tree|Reading state information)/,
  /^\(Reading database/,
  /^(Setting up|Unpacking|Preparing to unpack|Selecting previously unselected package) /,
  /^(Get|Hit|Ign):\d+ /,
  /^Processing triggers for /,
];

/** The last lines of apt's plan, before it downloads and runs dpkg. */
const PLANNED = /^(\d+ upgraded, \d+ newly installed|Need to get |After this operation|Fetched )/;

/**
 * The end of what a command wrote, as one bounded line: its standard output's last lines, then
 * its error output's (apt runs dpkg on a terminal of its own, so dpkg's errors and a maintainer
 * script's words arrive on apt's standard output, and apt's own errors on its error output),
 * progress left out; control characters dropped, so a maintainer script's output cannot forge
 * lines in vfleet's own.
 */
export function outputTail(result: ExecResult, maxLines = 10, maxChars = 800): string {
  const lines = (text: string) =>
    text
      .split('\n')
      // biome-ignore lint/suspicious/noControlCharactersInRegex: dropping them is the point
      .map((l) => l.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').trim())
      .filter((l) => l !== '' && !NOISE.some((n) => n.test(l)));
  const err = lines(result.stderr.toString('utf8'));
  // What apt says it will do comes before dpkg runs: only what follows it is about a failure.
  const all = lines(result.stdout.toString('utf8'));
  const start = all.findLastIndex((l) => PLANNED.test(l)) + 1;
  const out = all.slice(start).slice(-Math.max(0, maxLines - err.length));
  const text = [...out, ...err.slice(-maxLines)].join(' | ');
  if (text === '') return 'no output';
  return text.length > maxChars ? `…${text.slice(text.length - maxChars)}` : text;
}
