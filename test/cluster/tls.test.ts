// TLS by flag and mTLS for workers: certificates made with openssl for this test (a CA, a server
// certificate for 127.0.0.1, a worker client certificate). A plaintext client cannot talk to a TLS
// coordinator; a TLS client that trusts the CA can; with --tls-ca the worker stream needs a client
// certificate signed by the CA.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChorusClient, ChorusRpcError } from '../../shared/client/index.ts';
import * as h from './helpers.ts';

const dir = h.tmp('chorus-tls-');
const prefix = h.uniquePrefix();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const procs: h.Proc[] = [];
const f = (n: string) => join(dir, n);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

before(async () => {
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=chorus-test-ca',
  );
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    '/CN=127.0.0.1',
  );
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'server.ext',
  );
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'worker.key', '-out', 'worker.csr', '-subj', '/CN=worker');
  openssl(
    'x509',
    '-req',
    '-in',
    'worker.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'worker.pem',
    '-days',
    '2',
  );
  // A second CA the coordinator does not trust, and a worker certificate it signed.
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'other-ca.key',
    '-out',
    'other-ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=other-ca',
  );
  openssl(
    'x509',
    '-req',
    '-in',
    'worker.csr',
    '-CA',
    'other-ca.pem',
    '-CAkey',
    'other-ca.key',
    '-CAcreateserial',
    '-out',
    'stranger.pem',
    '-days',
    '2',
  );
  coord = await h.startCoordinator(prefix, [
    '--tls-cert',
    f('server.pem'),
    '--tls-key',
    f('server.key'),
    '--tls-ca',
    f('ca.pem'),
  ]);
  procs.push(coord);
});

after(async () => {
  await h.stopAll(procs);
  await h.cleanNats(prefix);
});

function tlsWorker(name: string, certArgs: string[]): h.Proc {
  const p = h.chorus([
    'worker',
    '--coordinator',
    coord.address,
    '--devices',
    'cpu:1',
    '--name',
    name,
    '--token',
    h.TOKENS.worker,
    '--tls-ca',
    f('ca.pem'),
    ...certArgs,
    ...h.DATA_ROOT,
  ]);
  procs.push(p);
  return p;
}

test('mTLS: clients need the CA and a certificate; workers register over mTLS', async () => {
  const plain = h.client(coord.address);
  await assert.rejects(plain.list(), (e: unknown) => e instanceof ChorusRpcError && e.code === 14 /* UNAVAILABLE */);
  plain.close();
  const ca = readFileSync(f('ca.pem'));
  // Trusting the CA but presenting no certificate: the handshake fails under --tls-ca.
  const noCert = new ChorusClient({ address: coord.address, token: h.TOKENS.client, tls: { ca } });
  await assert.rejects(
    noCert.list(),
    (e: unknown) => e instanceof ChorusRpcError && e.code === 14 && /certificate required/.test(e.message),
  );
  noCert.close();
  const stranger = new ChorusClient({
    address: coord.address,
    token: h.TOKENS.client,
    tls: { ca, cert: readFileSync(f('stranger.pem')), key: readFileSync(f('worker.key')) },
  });
  // The same key and subject as the accepted certificate below: only the signing CA differs.
  await assert.rejects(stranger.list(), (e: unknown) => e instanceof ChorusRpcError && e.code === 14);
  stranger.close();
  const good = new ChorusClient({
    address: coord.address,
    token: h.TOKENS.client,
    tls: { ca, cert: readFileSync(f('worker.pem')), key: readFileSync(f('worker.key')) },
  });
  try {
    assert.deepEqual(await good.list(), []);
    const w = tlsWorker('tlsw', ['--tls-cert', f('worker.pem'), '--tls-key', f('worker.key')]);
    await h.waitFor(w, /(registered as \S+)/, 30_000);
    // Workers without a client certificate, or with one from another CA, never register.
    const certless = tlsWorker('nocert', []);
    const foreign = tlsWorker('foreign', ['--tls-cert', f('stranger.pem'), '--tls-key', f('worker.key')]);
    await h.waitFor(certless, /stream to \S+ broke: .*certificate required/, 30_000);
    await h.waitFor(foreign, /stream to \S+ broke: No connection established/, 30_000);
    const ws = await good.workers();
    assert.deepEqual(
      ws.map((x) => x.name),
      ['tlsw'],
    );
  } finally {
    good.close();
  }
});
