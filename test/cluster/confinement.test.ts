// What a client's spec can make a worker read, and what comes back: a worker reads job inputs only
// under its --data-root directories (and its upload cache), a path outside is refused with the
// same words whether the file exists or not, and a file it may read but cannot parse is named with
// its line, never quoted (reproducer: `data: {train: /etc/shadow}` put "root:*:202" into the job's
// failure reason). A `chorus-object://file/<sha>/..` input is refused instead of leaving a plain
// file at `<cache>/files` that broke every later upload on that worker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex } from '../../shared/digest.ts';
import * as h from './helpers.ts';

const prefix = h.uniquePrefix();
const allowed = h.tmp('chorus-allowed-');
const outside = h.tmp('chorus-outside-');
const cache = h.tmp('chorus-cache-');
const SECRET = 'root:*:20200:0:99999:7:::';
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const procs: h.Proc[] = [];

before(async () => {
  await h.writeTinyModel(join(allowed, 'model'));
  h.writeTaskData(join(allowed, 'train.jsonl'), 8, 8, 1);
  writeFileSync(join(outside, 'shadow'), `${SECRET}\n`);
  writeFileSync(join(allowed, 'shadow.jsonl'), `${SECRET}\n`);
  // One failure of a shard's own run fails its job: each refusal below ends its job at once.
  coord = await h.startCoordinator(prefix, ['--max-failures', '1']);
  procs.push(coord, h.startWorker(coord.address, 'confined', 'cpu:1', ['--data-root', allowed, '--cache-dir', cache]));
});

after(async () => {
  await h.stopAll(procs);
  await h.cleanNats(prefix);
});

async function run(train: string) {
  const c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 1);
    const spec = h.jobSpec(allowed, { data: { train }, training: { steps: 2, batch_size: 4, seq_len: 8 } });
    return await c.wait(await c.submit(spec));
  } finally {
    c.close();
  }
}

test('a data file outside the data roots is refused, and the reason does not say whether it exists', async () => {
  const present = await run(join(outside, 'shadow'));
  const absent = await run(join(outside, 'no-such-file'));
  for (const job of [present, absent]) {
    assert.equal(job.state, 'failed');
    assert.match(job.reason, /data\.train: \S+ is outside the directories this worker reads job inputs from/);
    assert.doesNotMatch(job.reason, /root:|not found|ENOENT/);
  }
  const words = (r: string) => r.replace(/\S*(shadow|no-such-file)\b/g, 'PATH').replace(/j[0-9a-z]+-t0-r0/g, 'S');
  assert.equal(words(present.reason), words(absent.reason));
});

test('a data file inside the roots that is not JSONL is named with its line, its content is not quoted', async () => {
  const job = await run(join(allowed, 'shadow.jsonl'));
  assert.equal(job.state, 'failed');
  assert.match(job.reason, /shadow\.jsonl:1: not valid JSON/);
  assert.doesNotMatch(job.reason, /root|\*:/);
});

test('chorus-object://file/<sha>/.. is refused and later uploaded inputs still work', async () => {
  const c = h.client(coord.address);
  const data = readFileSync(join(allowed, 'train.jsonl'));
  const sha = sha256Hex(data);
  try {
    await c.uploadBlob(`uploads/blobs/${sha}`, data);
  } finally {
    c.close();
  }
  const bad = await run(`chorus-object://file/${sha}/..`);
  assert.equal(bad.state, 'failed');
  assert.match(bad.reason, /chorus-object:\/\/file\/[0-9a-f]{64}\/\.\.: "\.\." is not a file name/);
  assert.ok(!existsSync(join(cache, 'files')) || statSync(join(cache, 'files')).isDirectory());
  const good = await run(`chorus-object://file/${sha}/train.jsonl`);
  assert.equal(good.state, 'succeeded', good.reason);
});
