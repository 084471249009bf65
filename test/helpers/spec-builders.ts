// Small builders for fleet documents (habit 10, docs/architecture.md): a valid document by default, so a test
// changes only what it is about.
import { stringify } from 'yaml';
import type {
  FleetDocument,
  Host,
  Image,
  InstanceGroup,
} from '../../src/model/fleet-spec.generated.js';

export function aHost(overrides: Partial<Host> = {}): Host {
  return {
    name: 'hv-01',
    labels: { rack: 'r1' },
    cpu: { sockets: 2, coresPerSocket: 8, threadsPerCore: 2 },
    memoryMiB: 65536,
    diskGiB: 1000,
    os: { family: 'debian', release: '12', kernel: '6.1.0-26-amd64', arch: 'x86_64' },
    runs: ['vm', 'container'],
    ...overrides,
  };
}

export function anImage(overrides: Partial<Image> = {}): Image {
  return {
    name: 'debian-12',
    kind: 'container',
    os: { family: 'debian', release: '12', arch: 'x86_64' },
    source: { rootfs: 'images/debian-12.tar.gz' },
    packages: { openssl: '3.0.15-1~deb12u1' },
    ...overrides,
  };
}

export function aGroup(overrides: Partial<InstanceGroup> = {}): InstanceGroup {
  return {
    name: 'web',
    image: 'debian-12',
    replicas: 2,
    resources: { vcpus: 2, memoryMiB: 2048, diskGiB: 10 },
    ...overrides,
  };
}

export function aFleetDocument(overrides: Partial<FleetDocument['spec']> = {}): FleetDocument {
  return {
    apiVersion: 'vfleet/v1',
    kind: 'Fleet',
    metadata: { name: 'test' },
    spec: {
      hosts: [aHost(), aHost({ name: 'hv-02', labels: { rack: 'r2' } })],
      images: [anImage()],
      licenses: [{ name: 'backup-agent', metric: 'instance', entitlement: 10 }],
      patchBaselines: [
        {
          name: 'debian-12-security',
          appliesTo: { family: 'debian', release: '12' },
          minimum: { openssl: '3.0.15-1~deb12u1' },
        },
      ],
      instances: [aGroup()],
      ...overrides,
    },
  };
}

/** The document as a YAML file's bytes. */
export function toYaml(doc: unknown): string {
  return stringify(doc);
}

/**
 * A fleet of three plain embedded hosts (hv-1 … hv-3, no labels, no licenses or baselines) with a
 * `vm-12` VM image and the default sandbox image, named `name`: what the replication and drain
 * tests start from.
 */
export function threeHostVmFleet(
  name: string,
  overrides: Partial<FleetDocument['spec']> = {},
): FleetDocument {
  const doc = aFleetDocument({
    hosts: [
      aHost({ name: 'hv-1', labels: {} }),
      aHost({ name: 'hv-2', labels: {} }),
      aHost({ name: 'hv-3', labels: {} }),
    ],
    images: [
      anImage({ name: 'vm-12', kind: 'vm', source: { disk: 'vm.qcow2' }, packages: {} }),
      anImage({ packages: {} }),
    ],
    licenses: [],
    patchBaselines: [],
    ...overrides,
  });
  return { ...doc, metadata: { ...doc.metadata, name } };
}
