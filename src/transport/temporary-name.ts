// The one rule for temporary files that are renamed into place, shared by every transport and by
// image staging. A name must be unique among every writer of the same path at the same moment:
// the pid alone is not (one process writes a path from many jobs at once, and a pid repeats on
// another machine), so it carries 48 random bits. It stays next to its target, so the rename is
// within one filesystem and atomic.
import { randomBytes } from 'node:crypto';

/** `<path>.vfleet-tmp-<12 hex digits>`: where a write of `path` goes before its rename. */
export function temporaryPathFor(path: string): string {
  return `${path}.vfleet-tmp-${randomBytes(6).toString('hex')}`;
}
