// Bearer tokens and their file (coordinator/auth.ts), TLS files (shared/client/tls.ts, coordinator/server.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Authenticator, AuthError, loadTokens } from '../../coordinator/rpc/auth.ts';
import { clientTlsFiles } from '../../shared/client/tls.ts';
import { serverCredentials } from '../../coordinator/rpc/server.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'chorus-auth-'));

test('tokens: generated once into a 0600 file, reused, roles told apart', () => {
  const file = join(tmp(), 'sub', 'tokens.json');
  const a = loadTokens({ tokenFile: file });
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const b = loadTokens({ tokenFile: file });
  assert.deepEqual(a.tokens, b.tokens);
  assert.notEqual(a.tokens.client, a.tokens.worker);
  assert.ok(JSON.parse(readFileSync(file, 'utf8')).client === a.tokens.client);
  const auth = new Authenticator(a.tokens);
  const md = (t?: string) => {
    const m = new grpc.Metadata();
    if (t) m.set('authorization', `Bearer ${t}`);
    return m;
  };
  assert.equal(auth.authorize(md(a.tokens.client), ['client']), 'client');
  const codeOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      return (e as AuthError).code;
    }
    return -1;
  };
  assert.equal(
    codeOf(() => auth.authorize(md(), ['client'])),
    grpc.status.UNAUTHENTICATED,
  );
  assert.equal(
    codeOf(() => auth.authorize(md('x'), ['client'])),
    grpc.status.UNAUTHENTICATED,
  );
  assert.equal(
    codeOf(() => auth.authorize(md(a.tokens.worker), ['client'])),
    grpc.status.PERMISSION_DENIED,
  );
  assert.equal(new Authenticator(null).authorize(md(), ['worker']), null);
});

test('tokens: a token file others can read, or one with a non-string token, is refused', async () => {
  const open = join(tmp(), 'tokens.json');
  writeFileSync(open, JSON.stringify({ client: 'c1', worker: 'w1' }), { mode: 0o644 });
  assert.throws(() => loadTokens({ tokenFile: open }), /readable by other users: chmod 600/);
  const bad = join(tmp(), 'tokens.json');
  writeFileSync(bad, JSON.stringify({ client: 5, worker: 'w1' }), { mode: 0o600 });
  assert.throws(() => loadTokens({ tokenFile: bad }), /"client" must be a non-empty string/);
});

test('TLS files: a missing one is named with its flag; cert and key go together', async () => {
  assert.equal(clientTlsFiles({}), null);
  assert.throws(
    () => clientTlsFiles({ tlsCa: '/nonexistent/ca.pem' }),
    /--tls-ca: cannot read \/nonexistent\/ca\.pem \(ENOENT\)/,
  );
  assert.throws(() => clientTlsFiles({ tlsCert: 'c.pem' }), /--tls-cert and --tls-key go together/);
  assert.throws(
    () => serverCredentials({ cert: '/nonexistent/cert.pem', key: 'k' }),
    /--tls-cert: cannot read \/nonexistent\/cert\.pem/,
  );
});
