// Hostile input against a real coordinator over gRPC (issue 9, reproducers 1, 3, 11, 12): huge
// counts and names are INVALID_ARGUMENT naming the field and leave the coordinator serving; a job
// the store cannot hold is refused, not acknowledged and lost; bad blob names are INVALID_ARGUMENT,
// not INTERNAL; a huge error message is cut so the call settles.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ChorusRpcError } from '../../shared/client/index.ts';
import * as h from './helpers.ts';

let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const prefix = h.uniquePrefix();
const dir = h.tmp();

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeTaskData(join(dir, 'a.jsonl'), 8, 8, 1);
  coord = await h.startCoordinator(prefix);
});

after(async () => {
  await h.stopAll([coord]);
  await h.cleanNats(prefix);
});

/** The call's gRPC error; a call that has not settled in 20 s fails the test (reproducer 12 hung forever). */
async function code(p: Promise<unknown>): Promise<[number, string]> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('the call did not settle within 20 s')), 20_000);
  });
  try {
    await Promise.race([p, hang]);
  } catch (err) {
    assert.ok(err instanceof ChorusRpcError, `expected a gRPC error, got ${String(err).slice(0, 300)}`);
    return [err.code, err.message];
  } finally {
    clearTimeout(timer);
  }
  assert.fail('call succeeded');
}

test('reproducers 1 and 3: replicas 1e8 and a 600 KB name are INVALID_ARGUMENT; nothing is stored', async () => {
  const c = h.client(coord.address);
  try {
    const train = join(dir, 'a.jsonl');
    const [c1, m1] = await code(c.submit(h.jobSpec(dir, { tasks: [{ name: 'a', data: { train }, replicas: 1e8 }] })));
    assert.equal(c1, grpc.status.INVALID_ARGUMENT);
    assert.match(m1, /tasks\[0\]\.replicas: must be <= 64/);
    const [c2, m2] = await code(c.submit(h.jobSpec(dir, { name: 'x'.repeat(600_000), data: { train } })));
    assert.equal(c2, grpc.status.INVALID_ARGUMENT);
    assert.match(m2, /bytes exceeds the 262144-byte limit/);
    const [c3, m3] = await code(c.submit(h.jobSpec(dir, { data: { train } }), 'n'.repeat(200)));
    assert.equal(c3, grpc.status.INVALID_ARGUMENT);
    assert.match(m3, /^INVALID_ARGUMENT: name: 200 characters exceeds the 128-character limit/);
    assert.deepEqual(await c.list(), []);
    // Still serving: a good job is accepted.
    assert.match(await c.submit(h.jobSpec(dir, { data: { train } })), /^j/);
    const [c4] = await code(c.submit('a: *undefined_alias\n'));
    assert.equal(c4, grpc.status.INVALID_ARGUMENT);
  } finally {
    c.close();
  }
});

test('reproducer 11: a non-ASCII upload name and an empty download name are INVALID_ARGUMENT, not INTERNAL', async () => {
  const c = h.client(coord.address);
  try {
    for (const name of ['uploads/blobs/é', 'uploads/a b', 'uploads/a\\b']) {
      const [code1, msg] = await code(c.uploadBlob(name, new Uint8Array([1, 2, 3])));
      assert.equal(code1, grpc.status.INVALID_ARGUMENT, `${name}: ${msg}`);
      assert.match(msg, /blob name: .* is not a valid object name/);
    }
    const [code2, msg2] = await code(c.downloadBlob(''));
    assert.equal(code2, grpc.status.INVALID_ARGUMENT);
    assert.match(msg2, /blob name: must not be empty/);
    const [code3] = await code(c.downloadBlob('uploads/ü'));
    assert.equal(code3, grpc.status.INVALID_ARGUMENT);
  } finally {
    c.close();
  }
});

test('reproducer 12: an error message of hundreds of KB (ASCII or not) is cut and the call settles', async () => {
  const c = h.client(coord.address);
  try {
    for (const id of ['x'.repeat(200_000), 'é'.repeat(60_000), '%'.repeat(90_000)]) {
      const [c1, msg] = await code(c.get(id));
      assert.equal(c1, grpc.status.NOT_FOUND);
      assert.match(msg, /^NOT_FOUND: no job with id ".*… \(\d+ more characters\)$/s);
      assert.ok(msg.length <= 2200, `message of ${msg.length} characters`);
    }
    // The channel is not stuck: the next call works.
    assert.ok(Array.isArray(await c.list()));
  } finally {
    c.close();
  }
});

test('reproducer 3: a job the store cannot hold is refused, not acknowledged and lost', async () => {
  // A private NATS server with a 64 KiB message limit: a 40 KB spec makes a record past half of it.
  const small = h.tmp('chorus-nats-');
  const port = 14_000 + Math.floor(Math.random() * 20_000);
  writeFileSync(
    join(small, 'nats.conf'),
    `port: ${port}\nmax_payload: 65536\njetstream { store_dir: "${small}/js" }\n`,
  );
  const nats: ChildProcess = spawn('nats-server', ['-c', join(small, 'nats.conf')], { stdio: 'ignore' });
  const exited = new Promise((r) => nats.on('exit', r));
  let own: Awaited<ReturnType<typeof h.startCoordinator>> | undefined;
  try {
    own = await startOn(`nats://127.0.0.1:${port}`);
    const c = h.client(own.address);
    try {
      const long = join(dir, `${'d'.repeat(4000)}.jsonl`);
      const tasks = Array.from({ length: 10 }, (_, i) => ({ name: `t${i}`, data: { train: long } }));
      const [c1, msg] = await code(c.submit(h.jobSpec(dir, { tasks })));
      assert.equal(c1, grpc.status.INVALID_ARGUMENT);
      assert.match(
        msg,
        /^INVALID_ARGUMENT: spec: the job's record would be \d+ bytes, more than the 32768 bytes it may start with/,
      );
      assert.deepEqual(await c.list(), []);
      assert.match(await c.submit(h.jobSpec(dir, { data: { train: join(dir, 'a.jsonl') } })), /^j/);
      assert.equal((await c.list()).length, 1);
    } finally {
      c.close();
    }
  } finally {
    if (own) await h.stopAll([own]);
    nats.kill('SIGTERM');
    await exited;
  }
});

async function startOn(natsUrl: string) {
  for (let i = 0; i < 50; i++) {
    const p = h.chorus([
      'coordinator',
      '--listen',
      '127.0.0.1:0',
      '--nats',
      natsUrl,
      '--prefix',
      h.uniquePrefix(),
      '--client-token',
      h.TOKENS.client,
      '--worker-token',
      h.TOKENS.worker,
    ]);
    try {
      return { ...p, address: await h.waitFor(p, /ready (\S+)/, 30_000) };
    } catch (err) {
      // The server may still be starting.
      if (!/cannot connect to NATS/.test(p.output())) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`no NATS at ${natsUrl}`);
}
