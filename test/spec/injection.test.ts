// Every spec field that could one day reach a shell or a command line (ssh endpoint, paths,
// names, labels, package names and versions, kernel strings) refuses shell metacharacters,
// newlines, a leading '-' and NUL. Schema validation is the first line of defence; the
// transports quote again where values are used (docs/architecture.md).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { loadFleet } from '../../src/spec/load-fleet.js';
import { aFleetDocument, toYaml } from '../helpers/spec-builders.js';

const PAYLOADS = [
  'a;touch /tmp/pwned',
  '$(touch /tmp/pwned)',
  '`touch /tmp/pwned`',
  'a\ntouch /tmp/pwned',
  '-oProxyCommand=touch',
  'a\u0000b',
  'a|id',
  'a&&id',
  'a>x',
  "a'b",
  'a"b',
  'a b',
  'a\\b',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion is the payload
  '${IFS}',
  'a\rb',
];

type Doc = ReturnType<typeof aFleetDocument>;
type Setter = (doc: Doc, value: string) => void;

/** Where a value goes, and the path its diagnostic must point at. */
const FIELDS: Record<string, { set: Setter; path: string; spaces?: boolean }> = {
  'metadata.name': {
    set: (d, v) => {
      d.metadata.name = v;
    },
    path: 'metadata.name',
  },
  'host name': {
    set: (d, v) => {
      hostAt(d).name = v;
    },
    path: 'spec.hosts[0].name',
  },
  'host address': {
    set: (d, v) => {
      sshHost(d).address = v;
    },
    path: 'spec.hosts[0].address',
  },
  'host user': {
    set: (d, v) => {
      sshHost(d).user = v;
    },
    path: 'spec.hosts[0].user',
  },
  'host hostKey': {
    set: (d, v) => {
      sshHost(d).hostKey = v;
    },
    path: 'spec.hosts[0].hostKey',
  },
  'host identityFile': {
    set: (d, v) => {
      sshHost(d).identityFile = v;
    },
    path: 'spec.hosts[0].identityFile',
  },
  'host dataDir': {
    set: (d, v) => {
      hostAt(d).dataDir = `/var/lib/${v}`;
    },
    path: 'spec.hosts[0].dataDir',
  },
  'host label key': {
    set: (d, v) => {
      hostAt(d).labels = { rack: 'r1', [v]: 'x' };
    },
    path: 'spec.hosts[0].labels',
  },
  'host label value': {
    set: (d, v) => {
      hostAt(d).labels = { rack: v };
    },
    path: 'spec.hosts[0].labels.rack',
  },
  'host os.release': {
    set: (d, v) => {
      hostAt(d).os.release = v;
    },
    path: 'spec.hosts[0].os.release',
  },
  'host os.kernel': {
    set: (d, v) => {
      hostAt(d).os.kernel = v;
    },
    path: 'spec.hosts[0].os.kernel',
  },
  'image name': {
    set: (d, v) => {
      imageAt(d).name = v;
    },
    path: 'spec.images[0].name',
  },
  'image rootfs': {
    set: (d, v) => {
      imageAt(d).source = { rootfs: `images/${v}` };
    },
    path: 'spec.images[0].source.rootfs',
  },
  'image disk': {
    set: (d, v) => {
      imageAt(d).kind = 'vm';
      imageAt(d).source = { disk: v };
    },
    path: 'spec.images[0].source.disk',
  },
  'image kernel cmdline': {
    set: (d, v) => {
      imageAt(d).kind = 'vm';
      imageAt(d).source = { kernel: 'k/vmlinuz', cmdline: v };
    },
    path: 'spec.images[0].source.cmdline',
    // A kernel command line is words separated by spaces; it travels as one argv element.
    spaces: true,
  },
  'image packagesFrom': {
    set: (d, v) => {
      imageAt(d).packagesFrom = v;
    },
    path: 'spec.images[0].packagesFrom',
  },
  'package name': {
    set: (d, v) => {
      imageAt(d).packages = { [`ssl${v}`]: '1.0' };
    },
    path: 'spec.images[0].packages',
  },
  'package version': {
    set: (d, v) => {
      imageAt(d).packages = { openssl: `3.0${v}` };
    },
    path: 'spec.images[0].packages.openssl',
  },
  'baseline version': {
    set: (d, v) => {
      const baseline = (d.spec.patchBaselines ?? [])[0] as { minimum: Record<string, string> };
      baseline.minimum.openssl = `1:${v}`;
    },
    path: 'spec.patchBaselines[0].minimum.openssl',
  },
  'group name': {
    set: (d, v) => {
      groupAt(d).name = v;
    },
    path: 'spec.instances[0].name',
  },
  'group image': {
    set: (d, v) => {
      groupAt(d).image = v;
    },
    path: 'spec.instances[0].image',
  },
};

function hostAt(d: Doc) {
  return d.spec.hosts[0];
}
function sshHost(d: Doc) {
  const host = hostAt(d);
  Object.assign(host, {
    engine: 'ssh',
    address: host.address ?? '127.0.0.2',
    hostKey: host.hostKey ?? 'SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU',
  });
  return host;
}
function imageAt(d: Doc) {
  return d.spec.images[0] as NonNullable<Doc['spec']['images'][0]>;
}
function groupAt(d: Doc) {
  return (d.spec.instances ?? [])[0] as NonNullable<NonNullable<Doc['spec']['instances']>[0]>;
}

function errorsFor(field: string, value: string) {
  const doc = aFleetDocument();
  FIELDS[field]?.set(doc, value);
  return loadFleet(toYaml(doc), 'fleet.yaml').diagnostics.filter((d) => d.severity === 'error');
}

describe('injection attempts', () => {
  it('the untouched builder document is valid', () => {
    assert.deepEqual(loadFleet(toYaml(aFleetDocument()), 'fleet.yaml').diagnostics, []);
  });
  for (const field of Object.keys(FIELDS)) {
    const expectedPath = FIELDS[field]?.path as string;
    it(`${field} refuses every payload, at ${expectedPath}`, () => {
      for (const payload of PAYLOADS.filter((p) => !(FIELDS[field]?.spaces && p === 'a b'))) {
        const errors = errorsFor(field, payload);
        assert.ok(
          errors.some((e) => e.path.startsWith(expectedPath)),
          `${JSON.stringify(payload)} in ${field} was not refused at ${expectedPath}: ${JSON.stringify(errors)}`,
        );
      }
    });
  }

  it('no string with a shell metacharacter, space, newline or NUL passes any field (property)', () => {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are among the dangers
    const dangerous = /[;&|`$<>(){}\s\\'"*?!\u0000-\u001f]/;
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.keys(FIELDS)),
        fc.string({ unit: 'binary', maxLength: 24 }).filter((s) => dangerous.test(s)),
        (field, value) => {
          if (FIELDS[field]?.spaces && !dangerous.test(value.replace(/ /g, ''))) return true;
          const errors = errorsFor(field, value);
          return errors.length > 0;
        },
      ),
      { numRuns: 500, seed: 42 },
    );
  });
});
