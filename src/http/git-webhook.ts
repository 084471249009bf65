// `POST /hooks/git`: a forge's push webhook, answered as Argo CD's `/api/webhook` and Flux's
// notification-controller Receiver answer theirs (docs/gitops.md, "Push webhooks"). A push to the
// controller's ref asks for a fetch now (the `onPush` the controller gives: the same request as
// `vfleet reconcile --now`); anything else is answered and does nothing.
//
// Every request is authenticated before its body is parsed — the forge signs instead of logging
// in, so basic auth is not asked of this path (server.ts), but the secret always is:
//   - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`;
//   - Gitea, Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature`: the same HMAC as bare hex
//     (or GitHub's header, which they also send);
//   - GitLab: `X-Gitlab-Token`: the secret itself.
// Every comparison is constant-time. The body is read up to a bound (a push needs its `ref`
// only); a longer one is refused as it comes, never buffered whole.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { HttpError } from './http-error.js';

export const WEBHOOK_PATH = '/hooks/git';

/** GitHub's payloads go up to 25 MB; a push's `ref` and `after` come first and are all we read. */
export const WEBHOOK_MAX_BODY_BYTES = 1024 * 1024;

export type Forge = 'github' | 'gitlab' | 'gitea' | 'forgejo';

/** A push the webhook accepted: what the controller records and fetches for. */
export interface GitPush {
  readonly forge: Forge;
  /** As the forge sent it: `refs/heads/main`, `refs/tags/v1`. */
  readonly ref: string;
  /** The pushed commit (`after`), when the payload carried one. */
  readonly commit?: string;
  /** The forge's delivery id (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`…), to find it there. */
  readonly delivery?: string;
}

export interface GitWebhook {
  /** The shared secret, read when a request comes (a file may be rotated); undefined: unreadable. */
  readonly secret: () => string | undefined;
  /** The branch or tag the controller follows (`--ref`). */
  readonly ref: string;
  /** A push to that ref: ask for a fetch (resolves once recorded). */
  readonly onPush: (push: GitPush) => Promise<void>;
}

export interface WebhookAnswer {
  readonly status: number;
  readonly text: string;
}

/** Answers one request to WEBHOOK_PATH (throws HttpError for the refusals). */
export async function answerWebhook(
  request: IncomingMessage,
  hook: GitWebhook,
): Promise<WebhookAnswer> {
  if (request.method !== 'POST')
    throw new HttpError(405, `${request.method} is not served here: forges POST`, {
      allow: 'POST',
    });
  // The body is read (bounded) before any refusal: a connection closed on a body it has not
  // read is reset, and the forge would show a reset instead of the answer.
  const body = await readBounded(request, WEBHOOK_MAX_BODY_BYTES);
  const sender = senderOf(request);
  const secret = hook.secret();
  if (secret === undefined) throw new HttpError(503, 'the webhook secret cannot be read');
  if (sender.forge === 'gitlab') checkToken(request, secret);
  else checkSignature(signatureOf(request, sender.forge), body, secret);
  if (sender.event === 'ping') return { status: 200, text: 'pong' };
  const payload = parsePayload(request, body);
  if (!isPush(sender, payload)) return { status: 200, text: `ignored: event ${sender.event}` };
  const ref = payload.ref;
  if (typeof ref !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(ref))
    throw new HttpError(400, 'the push names no ref');
  if (!followed(hook.ref, ref))
    return { status: 200, text: `ignored: ref ${ref} is not the followed ${hook.ref}` };
  const after = typeof payload.after === 'string' ? payload.after : undefined;
  const push: GitPush = {
    forge: sender.forge,
    ref,
    ...(after !== undefined && /^[0-9a-f]{40,64}$/.test(after) ? { commit: after } : {}),
    ...(sender.delivery ? { delivery: sender.delivery } : {}),
  };
  await hook.onPush(push);
  return {
    status: 202,
    text: `fetch requested: ${ref}${push.commit ? ` ${push.commit.slice(0, 12)}` : ''}`,
  };
}

/** Whether a pushed ref is the one followed: `main` is `refs/heads/main` or `refs/tags/main`. */
export function followed(followedRef: string, pushed: string): boolean {
  if (followedRef.startsWith('refs/')) return pushed === followedRef;
  return pushed === `refs/heads/${followedRef}` || pushed === `refs/tags/${followedRef}`;
}

interface Sender {
  readonly forge: Forge;
  readonly event: string;
  readonly delivery?: string;
}

const header = (request: IncomingMessage, name: string): string | undefined => {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/** Which forge sent it, by its event header (Gitea and Forgejo also send GitHub's). */
function senderOf(request: IncomingMessage): Sender {
  const delivery = (name: string) => {
    const id = header(request, name);
    return id !== undefined && /^[A-Za-z0-9._-]{1,80}$/.test(id) ? { delivery: id } : {};
  };
  const gitlab = header(request, 'x-gitlab-event');
  if (gitlab !== undefined)
    return { forge: 'gitlab', event: gitlab, ...delivery('x-gitlab-event-uuid') };
  const forgejo = header(request, 'x-forgejo-event');
  if (forgejo !== undefined)
    return { forge: 'forgejo', event: forgejo, ...delivery('x-forgejo-delivery') };
  const gitea = header(request, 'x-gitea-event');
  if (gitea !== undefined) return { forge: 'gitea', event: gitea, ...delivery('x-gitea-delivery') };
  const github = header(request, 'x-github-event');
  if (github !== undefined)
    return { forge: 'github', event: github, ...delivery('x-github-delivery') };
  throw new HttpError(
    400,
    'not a push webhook: no X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event or X-Forgejo-Event header',
  );
}

/** Equal in constant time, whatever the lengths (both are hashed first). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function checkToken(request: IncomingMessage, secret: string): void {
  const token = header(request, 'x-gitlab-token');
  if (token === undefined) throw new HttpError(401, 'no X-Gitlab-Token: set the secret token');
  if (!sameSecret(token, secret)) throw new HttpError(401, 'the X-Gitlab-Token does not match');
}

interface Signature {
  readonly header: string;
  readonly given: string;
  /** GitHub's `sha256=` before the hex; Gitea's and Forgejo's own headers have none. */
  readonly prefix: string;
}

/** The signature a request carries (refused before its body is read when there is none). */
function signatureOf(request: IncomingMessage, forge: Forge): Signature {
  const github = header(request, 'x-hub-signature-256');
  if (github !== undefined || forge === 'github') {
    if (github === undefined)
      throw new HttpError(401, "no X-Hub-Signature-256: set the webhook's secret");
    return { header: 'X-Hub-Signature-256', given: github, prefix: 'sha256=' };
  }
  const name = forge === 'forgejo' ? 'X-Forgejo-Signature' : 'X-Gitea-Signature';
  const given = header(request, name.toLowerCase());
  if (given === undefined) throw new HttpError(401, `no ${name}: set the webhook's secret`);
  return { header: name, given, prefix: '' };
}

function checkSignature(signature: Signature, body: Buffer, secret: string): void {
  const expected = `${signature.prefix}${createHmac('sha256', secret).update(body).digest('hex')}`;
  if (!sameSecret(signature.given.trim().toLowerCase(), expected))
    throw new HttpError(401, `the ${signature.header} does not match the body`);
}

/**
 * The body, at most `maxBytes`: a longer one is refused at its declared length or as it comes,
 * and what follows is read and dropped — up to DRAIN_BYTES, past which the connection is cut —
 * so that the refusal reaches the client rather than a reset (a forge's payload is at most
 * 25 MB). Nothing beyond `maxBytes` is kept.
 */
function readBounded(request: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const tooLarge = new HttpError(413, `a push is at most ${maxBytes} bytes here`, {
    connection: 'keep-alive', // the body is drained: the connection may carry the next request
  });
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const drain = () => {
      request.off('data', data);
      request.off('end', end);
      let dropped = size;
      request.on('data', (chunk: Buffer) => {
        dropped += chunk.length;
        if (dropped > DRAIN_BYTES) request.socket.destroy();
      });
      reject(tooLarge);
    };
    const data = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) chunks.push(chunk);
      else drain();
    };
    const end = () => resolve(Buffer.concat(chunks));
    request.on('data', data);
    request.on('end', end);
    request.on('error', reject);
    const length = Number(header(request, 'content-length') ?? 0);
    if (length > DRAIN_BYTES) {
      request.off('data', data);
      reject(new HttpError(413, `a push is at most ${maxBytes} bytes here`));
    } else if (length > maxBytes) drain();
  });
}

/** How much of a body too long is read and dropped before the connection is cut. */
const DRAIN_BYTES = 32 * 1024 * 1024;

type Payload = Record<string, unknown>;

/** JSON, or GitHub's form encoding (`payload=<JSON>`), which its settings also offer. */
function parsePayload(request: IncomingMessage, body: Buffer): Payload {
  let text = body.toString('utf8');
  if ((header(request, 'content-type') ?? '').startsWith('application/x-www-form-urlencoded'))
    text = new URLSearchParams(text).get('payload') ?? '';
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'the body is not JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new HttpError(400, 'the body is not a JSON object');
  return value as Payload;
}

/** A push or tag push (GitLab's system hooks name it in the body). */
function isPush(sender: Sender, payload: Payload): boolean {
  if (sender.forge !== 'gitlab') return sender.event === 'push';
  if (sender.event === 'Push Hook' || sender.event === 'Tag Push Hook') return true;
  return (
    sender.event === 'System Hook' &&
    (payload.event_name === 'push' || payload.event_name === 'tag_push')
  );
}
