// The pinned host key of an ssh host (spec `hostKey`): an OpenSSH public key line, compared as
// the raw key blob, or a "SHA256:…" fingerprint, compared as a fingerprint. ssh2 hands the
// verifier the server's key blob during key exchange, before any authentication is sent.
import { createHash } from 'node:crypto';

export interface PinnedHostKey {
  /** "SHA256:<base64, no padding>", as `ssh-keygen -lf` prints it. */
  readonly fingerprint: string;
  /**
   * The host key algorithms to offer, so the server presents the pinned kind of key (a server
   * usually has several); undefined for a fingerprint pin, whose kind is unknown.
   */
  readonly algorithms: readonly string[] | undefined;
  matches(blob: Buffer): boolean;
}

export function sha256Fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type a blob starts with (an SSH string: uint32 length, then the name). */
function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32BE(0);
  return blob.length >= 4 + length ? blob.subarray(4, 4 + length).toString('latin1') : undefined;
}

const ALGORITHMS_FOR_TYPE: Readonly<Record<string, readonly string[]>> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
};

/** Throws a plain Error for a value the schema would not have let through. */
export function parsePinnedHostKey(hostKey: string): PinnedHostKey {
  const text = hostKey.trim();
  if (text.startsWith('SHA256:')) {
    const fingerprint = text.replace(/=+$/, '');
    return {
      fingerprint,
      algorithms: undefined,
      matches: (blob) => sha256Fingerprint(blob) === fingerprint,
    };
  }
  const [type, base64] = text.split(/\s+/);
  const algorithms = type === undefined ? undefined : ALGORITHMS_FOR_TYPE[type];
  const pinned = Buffer.from(base64 ?? '', 'base64');
  if (algorithms === undefined || blobType(pinned) !== type) {
    throw new Error('hostKey is neither an OpenSSH public key line nor a SHA256 fingerprint');
  }
  return {
    fingerprint: sha256Fingerprint(pinned),
    algorithms,
    matches: (blob) => blob.equals(pinned),
  };
}
