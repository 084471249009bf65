// What Debian allows as a package name and a version (Debian Policy §5.6.1 and §5.6.12), checked
// before either reaches apt-get on a host: `name=version` must be exactly one package at exactly
// one version, and neither may be read as an option (`-o…`) or a pattern (`~…`, `?…`, globs).
//
// A name is lower-case letters, digits and `+ - .`, at least two characters, starting with a
// letter or digit; dpkg may qualify it with an architecture (`libc6:amd64`). A version is
// `[epoch:]upstream[-revision]`: the epoch a number; the upstream part starting with a digit, of
// letters, digits and `. + ~`, with `-` only when there is a revision (the last `-` splits them);
// the revision of letters, digits and `+ . ~`.

const NAME = /^[a-z0-9][a-z0-9+.-]+$/;
const ARCH = /^[a-z0-9][a-z0-9-]*$/;
const EPOCH = /^[0-9]+$/;
const UPSTREAM_WITH_REVISION = /^[0-9][A-Za-z0-9.+~-]*$/;
const UPSTREAM_ALONE = /^[0-9][A-Za-z0-9.+~]*$/;
const REVISION = /^[A-Za-z0-9+.~]+$/;

/** Longer than any real one; a bound on what is passed to a host's command line. */
const MAX_LENGTH = 128;

/** A Debian package name, optionally `:arch`-qualified as dpkg-query writes multi-arch ones. */
export function isDebianPackageName(name: string): boolean {
  if (typeof name !== 'string' || name.length > MAX_LENGTH) return false;
  const colon = name.indexOf(':');
  if (colon === -1) return NAME.test(name);
  return NAME.test(name.slice(0, colon)) && ARCH.test(name.slice(colon + 1));
}

/** A Debian version, as Policy §5.6.12 defines it. */
export function isDebianVersion(version: string): boolean {
  if (typeof version !== 'string' || version.length === 0 || version.length > MAX_LENGTH)
    return false;
  const colon = version.indexOf(':');
  const epoch = colon === -1 ? undefined : version.slice(0, colon);
  if (epoch !== undefined && !EPOCH.test(epoch)) return false;
  const rest = colon === -1 ? version : version.slice(colon + 1);
  const hyphen = rest.lastIndexOf('-');
  if (hyphen === -1) return UPSTREAM_ALONE.test(rest);
  return (
    UPSTREAM_WITH_REVISION.test(rest.slice(0, hyphen)) && REVISION.test(rest.slice(hyphen + 1))
  );
}
