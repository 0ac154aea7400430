// The coordinator's dashboard (`--http`) on a real coordinator process: it shows job names and
// failure reasons, so it takes the client token or its own read-only token (`--http-token`) and
// nothing else, serves HTTPS with the gRPC port's certificate (`--tls-cert/--tls-key`), and leaves
// only /healthz open. Before, anyone who reached the port read every job's failure reason.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as h from './helpers.ts';

const dir = h.tmp('chorus-dash-');
const prefix = h.uniquePrefix();
const HTTP_TOKEN = 'dashboard-only-token-3';
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
let url = '';
let ca: Buffer;

before(async () => {
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '2'],
      ...['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
    ],
    { cwd: dir, stdio: 'pipe' },
  );
  ca = readFileSync(join(dir, 'cert.pem'));
  coord = await h.startCoordinator(prefix, [
    ...['--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')],
    ...['--http', '127.0.0.1:0', '--http-token', HTTP_TOKEN],
  ]);
  url = /dashboard on (https:\/\/\S+)/.exec(coord.output())![1];
});

after(async () => {
  await h.stopAll([coord]);
  await h.cleanNats(prefix);
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${url}${path}`, { ca, headers }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

test('without the client or dashboard token the dashboard answers 401; /healthz stays open', async () => {
  for (const path of ['/', '/api/jobs', '/api/workers', '/api/events', '/metrics']) {
    assert.equal((await get(path)).status, 401, path);
    assert.equal((await get(path, bearer(h.TOKENS.worker))).status, 401, `${path} with the worker token`);
    assert.equal((await get(path, bearer('nonsense'))).status, 401, `${path} with a wrong token`);
  }
  assert.equal((await get('/healthz')).status, 200);
});

test('the client token and the dashboard token open it; a browser gets a derived cookie', async () => {
  assert.equal((await get('/api/jobs', bearer(h.TOKENS.client))).status, 200);
  const jobs = await get('/api/jobs', bearer(HTTP_TOKEN));
  assert.equal(jobs.status, 200);
  assert.deepEqual(JSON.parse(jobs.body), []);
  const opened = await get(`/?token=${HTTP_TOKEN}`);
  assert.equal(opened.status, 303);
  assert.equal(opened.headers.location, '/');
  const setCookie = String(opened.headers['set-cookie']);
  assert.match(setCookie, /HttpOnly; SameSite=Strict; Path=\/; Secure/);
  assert.ok(!setCookie.includes(HTTP_TOKEN), 'the cookie is not the token');
  const cookie = setCookie.split(';')[0];
  assert.equal((await get('/', { cookie })).status, 200);
  assert.equal((await get('/api/jobs', { cookie: `${cookie.split('=')[0]}=${HTTP_TOKEN}` })).status, 401);
});

test('the dashboard speaks HTTPS only', async () => {
  const plain = new URL(url.replace('https:', 'http:'));
  const outcome = await new Promise<string>((resolve) => {
    const req = httpRequest(plain, (res) => resolve(`HTTP ${res.statusCode}`));
    req.on('error', (err) => resolve(`error ${(err as NodeJS.ErrnoException).code}`));
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
  assert.match(outcome, /^error /, `a plaintext request got ${outcome}`);
});
