// The one redaction every message passes through before it is printed (src/state/README.md,
// "Secrets"). A Redis password reaches vfleet in REDIS_URL; ioredis then copies it into the
// HELLO/AUTH command it attaches to its errors, and libraries print such errors on their own
// (BullMQ's console.error of an unhandled `error` event, Node's report of an uncaught one). So
// the password is remembered when the URL is read, and `redact` removes it — and anything shaped
// like a credential — from any text: a known secret in every form it may be written in, the
// password of any URL's user info, and the arguments of AUTH, HELLO … AUTH and CONFIG SET
// requirepass as an inspected or JSON array shows them.

const MASK = '***';

/** Every secret this process was given, longest first (one may contain another). */
const secrets: string[] = [];

/**
 * Remembers `secret` so that `redact` removes it from everything printed from now on. Called by
 * the code that reads a secret (parseRedisUrl), at the moment it reads it.
 */
export function rememberSecret(secret: string | undefined): void {
  if (secret === undefined || secret === '') return;
  // The forms a password takes in text: raw, percent-encoded (a URL), JSON- and
  // inspect-escaped (a quote or backslash in it gains a backslash in a printed object).
  const forms = [
    secret,
    encodeURIComponent(secret),
    JSON.stringify(secret).slice(1, -1),
    secret.replace(/['\\]/g, '\\$&'),
  ];
  for (const form of forms) if (!secrets.includes(form)) secrets.push(form);
  secrets.sort((a, b) => b.length - a.length);
}

// `scheme://user:password@` → `scheme://user:***@` (the user stays: it names who, not how).
// (A user name does not start with '[': `redis://[user[:password]@]host`, the form messages show,
// is left alone.)
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:[][^\s/?#@:]*|):([^\s/?#@]*)@/gi;
// A quoted element of an inspected or JSON array: 'x', "x" or `x`, escapes included.
const Q = String.raw`(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\x60(?:[^\x60\\]|\\.)*\x60)`;
// [ '3', 'AUTH', 'default', 'pw' ], [ 'AUTH', 'pw' ], ["AUTH","user","pw"]: everything after AUTH
// up to the end of the array (a user name is not secret, but which element is the password
// depends on the command; both go).
const AUTH_ARGS = new RegExp(`(['"\`]AUTH['"\`])((?:\\s*,\\s*${Q})+)`, 'g');
// { name: 'auth', args: [ 'pw' ] }: the command ioredis attaches to an error of AUTH itself.
const AUTH_COMMAND = /(\bname['"]?\s*:\s*['"]auth['"]\s*,\s*['"]?args['"]?\s*:\s*\[)[^\]]*\]/gi;
// CONFIG SET requirepass / masterauth <value>, as an array.
const CONFIG_ARGS = new RegExp(`(['"\`](?:requirepass|masterauth)['"\`]\\s*,\\s*)${Q}`, 'gi');

/** `text` with every known secret and every credential-shaped part replaced by `***`. */
export function redact(text: string): string {
  let out = text;
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join(MASK);
  out = out.replace(
    URL_USERINFO,
    (_m, scheme: string, user: string) => `${scheme}${user}:${MASK}@`,
  );
  out = out.replace(AUTH_ARGS, (_m, auth: string) => `${auth}, '${MASK}'`);
  out = out.replace(AUTH_COMMAND, (_m, head: string) => `${head} '${MASK}' ]`);
  return out.replace(CONFIG_ARGS, (_m, key: string) => `${key}'${MASK}'`);
}

/** An error (or anything thrown) as one printable line: its message, redacted. */
export function redactedMessage(e: unknown): string {
  const message =
    e instanceof Error ? e.message : typeof e === 'string' ? e : String((e as object) ?? e);
  return redact(message.split('\n')[0] ?? '');
}
