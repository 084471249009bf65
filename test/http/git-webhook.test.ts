// `POST /hooks/git` on the HTTP server of src/http/ in this process, with the forms of every
// forge it takes, signed as each forge signs (the end-to-end test with a real controller and git
// repository is test/cli/controller-webhook-cli.test.ts): GitHub's JSON and form-encoded bodies,
// Gitea's and Forgejo's own signature headers, GitLab's token and its system hooks, tags; which
// pushed refs are the followed one; a server without a webhook serves none (404), and basic auth
// is not asked of the hook while the signature always is.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { renderAuditHtml } from '../../src/cli/views/audit/html.js';
import { credentialsFor } from '../../src/http/basic-auth.js';
import { followed, type GitPush } from '../../src/http/git-webhook.js';
import { parseListenAddress } from '../../src/http/listen-address.js';
import { type RunningHttpServer, startHttpServer } from '../../src/http/server.js';
import { basicAuth, httpCall } from '../helpers/http-call.js';

const SECRET = 'git-webhook-test-secret-5d2';
const COMMIT = 'bffeb74224043ba2feb48d137756c8a9331c449a';
const hmac = (body: string, secret = SECRET) =>
  createHmac('sha256', secret).update(body).digest('hex');

describe('the push webhook in process', () => {
  const listen = parseListenAddress('127.0.0.1:0');
  const served = {
    session: () => undefined,
    sync: async () => undefined,
    notReady: () => undefined,
  };
  const pushes: GitPush[] = [];
  let hooked: RunningHttpServer;
  let plain: RunningHttpServer;
  let secret: string | undefined = SECRET;

  before(async () => {
    hooked = await startHttpServer({
      listen,
      credentials: credentialsFor(listen, {
        VFLEET_HTTP_USER: 'ops',
        VFLEET_HTTP_PASSWORD: 'pw-3c9',
      }),
      queuesWritable: false,
      process: served,
      renderReport: renderAuditHtml,
      gitWebhook: {
        secret: () => secret,
        ref: 'main',
        onPush: async (push) => void pushes.push(push),
      },
    });
    plain = await startHttpServer({
      listen,
      credentials: null,
      queuesWritable: false,
      process: served,
      renderReport: renderAuditHtml,
    });
  });
  after(async () => {
    await hooked?.close();
    await plain?.close();
  });

  const post = (headers: Record<string, string>, body: string, to = hooked.url) =>
    httpCall(`${to}/hooks/git`, { method: 'POST', headers, body });
  const push = JSON.stringify({ ref: 'refs/heads/main', after: COMMIT });

  it('knows the followed ref among pushed ones', () => {
    const cases: Array<[string, string, boolean]> = [
      ['main', 'refs/heads/main', true],
      ['main', 'refs/tags/main', true],
      ['main', 'refs/heads/maintenance', false],
      ['main', 'refs/heads/feature/main', false],
      ['main', 'main', false],
      ['release/1.x', 'refs/heads/release/1.x', true],
      ['v1.2', 'refs/tags/v1.2', true],
      ['refs/heads/main', 'refs/heads/main', true],
      ['refs/heads/main', 'refs/tags/main', false],
    ];
    for (const [ref, pushed, expected] of cases)
      assert.equal(followed(ref, pushed), expected, `${ref} ← ${pushed}`);
  });

  it('takes each forge’s form, signed as it signs', async () => {
    const form = `payload=${encodeURIComponent(push)}`;
    const cases: Array<[string, Record<string, string>, string, GitPush['forge']]> = [
      [
        'GitHub, JSON',
        { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${hmac(push)}` },
        push,
        'github',
      ],
      [
        'GitHub, form-encoded',
        {
          'content-type': 'application/x-www-form-urlencoded',
          'x-github-event': 'push',
          'x-hub-signature-256': `sha256=${hmac(form)}`,
        },
        form,
        'github',
      ],
      [
        'Gitea, its own header (bare hex), and GitHub’s event header it also sends',
        { 'x-gitea-event': 'push', 'x-github-event': 'push', 'x-gitea-signature': hmac(push) },
        push,
        'gitea',
      ],
      [
        'Forgejo',
        { 'x-forgejo-event': 'push', 'x-forgejo-signature': hmac(push).toUpperCase() },
        push,
        'forgejo',
      ],
      [
        'Gitea sending GitHub’s signature header too',
        { 'x-gitea-event': 'push', 'x-hub-signature-256': `sha256=${hmac(push)}` },
        push,
        'gitea',
      ],
      ['GitLab', { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRET }, push, 'gitlab'],
      [
        'GitLab, a tag',
        { 'x-gitlab-event': 'Tag Push Hook', 'x-gitlab-token': SECRET },
        JSON.stringify({ ref: 'refs/tags/main', after: COMMIT }),
        'gitlab',
      ],
      [
        'GitLab, a system hook',
        { 'x-gitlab-event': 'System Hook', 'x-gitlab-token': SECRET },
        JSON.stringify({ event_name: 'push', ref: 'refs/heads/main', after: COMMIT }),
        'gitlab',
      ],
    ];
    for (const [what, headers, body, forge] of cases) {
      pushes.length = 0;
      const answer = await post(headers, body);
      assert.equal(answer.status, 202, `${what}: ${answer.body}`);
      assert.equal(pushes.length, 1, what);
      assert.equal(pushes[0]?.forge, forge, what);
      assert.equal(pushes[0]?.commit, COMMIT, what);
    }
  });

  it('refuses what is not signed with the secret, and asks nothing of a refused push', async () => {
    pushes.length = 0;
    const refusals: Array<[string, Record<string, string>]> = [
      ['Gitea, another secret', { 'x-gitea-event': 'push', 'x-gitea-signature': hmac(push, 'x') }],
      ['Gitea, no signature', { 'x-gitea-event': 'push' }],
      [
        'Forgejo, Gitea’s header only',
        { 'x-forgejo-event': 'push', 'x-gitea-signature': hmac(push) },
      ],
      ['GitLab, no token', { 'x-gitlab-event': 'Push Hook' }],
      [
        'GitLab, a signature instead',
        { 'x-gitlab-event': 'Push Hook', 'x-hub-signature-256': `sha256=${hmac(push)}` },
      ],
      ['GitHub, SHA-1 only', { 'x-github-event': 'push', 'x-hub-signature': 'sha1=00' }],
      [
        'GitHub, basic auth instead of a signature',
        { 'x-github-event': 'push', authorization: basicAuth('ops', 'pw-3c9') },
      ],
    ];
    for (const [what, headers] of refusals) {
      const answer = await post(headers, push);
      assert.equal(answer.status, 401, `${what}: ${answer.body}`);
      assert.equal(answer.body.trimEnd().split('\n').length, 1);
    }
    assert.deepEqual(pushes, []);
    // A GitLab system hook that is not a push, a push without a ref.
    const system = await post(
      { 'x-gitlab-event': 'System Hook', 'x-gitlab-token': SECRET },
      JSON.stringify({ event_name: 'project_create' }),
    );
    assert.deepEqual([system.status, system.body], [200, 'ignored: event System Hook\n']);
    const noRef = JSON.stringify({ after: COMMIT });
    const refused = await post(
      { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${hmac(noRef)}` },
      noRef,
    );
    assert.deepEqual([refused.status, refused.body], [400, 'the push names no ref\n']);
    assert.deepEqual(pushes, []);
  });

  it('answers 503 while the secret cannot be read, and never shows it', async () => {
    secret = undefined;
    try {
      const answer = await post({ 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRET }, push);
      assert.deepEqual([answer.status, answer.body], [503, 'the webhook secret cannot be read\n']);
    } finally {
      secret = SECRET;
    }
    const wrong = await post({ 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': 'nope' }, push);
    assert.ok(!wrong.body.includes(SECRET));
  });

  it('serves no webhook without a secret: 404 whatever the method, and basic auth elsewhere', async () => {
    for (const method of ['POST', 'GET', 'PUT']) {
      const answer = await httpCall(`${plain.url}/hooks/git`, {
        method,
        headers: { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${hmac(push)}` },
        ...(method === 'GET' ? {} : { body: push }),
      });
      assert.equal(answer.status, 404, method);
      assert.match(answer.body, /^no webhook here: /);
    }
    assert.equal((await httpCall(`${hooked.url}/metrics`)).status, 401);
  });
});
