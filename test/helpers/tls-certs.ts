// A throwaway certificate authority and a server certificate for 127.0.0.1 (openssl, into a
// folder the caller removes), for the tests of REDIS_URL's TLS forms: the server is given the
// certificate, vfleet trusts the authority through NODE_EXTRA_CA_CERTS.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

export interface TestCerts {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export function makeTestCerts(dir: string): TestCerts {
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=vfleet-test-ca',
  ]);
  openssl([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'node.key',
    '-out',
    'node.csr',
    '-subj',
    '/CN=127.0.0.1',
  ]);
  writeFileSync(`${dir}/san.cnf`, 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl([
    'x509',
    '-req',
    '-in',
    'node.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'node.crt',
    '-days',
    '2',
    '-extfile',
    'san.cnf',
  ]);
  return { ca: `${dir}/ca.crt`, cert: `${dir}/node.crt`, key: `${dir}/node.key` };
}
