// What workers do with a job's inputs and devices: `chorus submit --upload` sends the base model
// directory and the data through the object store and the worker fetches them into its cache
// (digest-checked), so it needs no shared filesystem — here the originals are deleted before any
// worker exists; unreadable inputs fail the job with the file named; GPU-style devices run each
// shard in its own child process next to piscina thread runners.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as h from './helpers.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp('chorus-upload-');
const cache = h.tmp('chorus-cache-');
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const procs: h.Proc[] = [];

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeTaskData(join(dir, 'train.jsonl'), 8, 8, 1);
  writeFileSync(
    join(dir, 'job.yaml'),
    [
      'name: uploaded',
      'base_model: ./model',
      'lora: {r: 2, alpha: 4, target_modules: [q_proj]}',
      'training: {steps: 3, batch_size: 4, seq_len: 8, eval_every: 0}',
      'data: {train: ./train.jsonl}',
      '',
    ].join('\n'),
  );
  coord = await h.startCoordinator(prefix);
  procs.push(coord);
});

after(async () => {
  await h.stopAll(procs);
  await h.cleanNats(prefix);
});

test('a job submitted with --upload runs on a worker that never saw its files', async () => {
  const env = { CHORUS_COORDINATOR: coord.address, CHORUS_TOKEN: h.TOKENS.client };
  const submit = h.chorus(['submit', join(dir, 'job.yaml'), '--upload'], env);
  assert.equal(await submit.exited, 0, submit.output());
  const id = /^(j[0-9a-z]+)$/m.exec(submit.output())?.[1];
  assert.ok(id, submit.output());
  assert.match(submit.output(), /uploaded .*model\.safetensors/);
  rmSync(join(dir, 'model'), { recursive: true });
  rmSync(join(dir, 'train.jsonl'));

  procs.push(
    h.chorus([
      'worker',
      '--coordinator',
      coord.address,
      '--devices',
      'cpu:1',
      '--name',
      'u1',
      '--token',
      h.TOKENS.worker,
      '--cache-dir',
      cache,
      ...h.DATA_ROOT,
    ]),
  );
  const c = h.client(coord.address);
  try {
    const job = await c.wait(id);
    assert.equal(job.state, 'succeeded', job.reason);
    assert.match(job.spec, /chorus-object:\/\/dir\/[0-9a-f]{64}/);
    assert.ok(existsSync(join(cache, 'dirs')) && readdirSync(join(cache, 'dirs')).length === 1);
    assert.ok(readdirSync(join(cache, 'files')).length === 1);
  } finally {
    c.close();
  }
});

test('a job whose data a worker cannot read fails with a reason naming the file', async () => {
  await h.writeTinyModel(join(dir, 'model2'));
  const c = h.client(coord.address);
  try {
    const missing = join(dir, 'nowhere.jsonl');
    const id = await c.submit(h.jobSpec(dir, { base_model: join(dir, 'model2'), data: { train: missing } }));
    const job = await c.wait(id);
    assert.equal(job.state, 'failed');
    assert.match(job.reason, /nowhere\.jsonl/);
    assert.match(job.reason, /failed 4 time/);
  } finally {
    c.close();
  }
});

test('a GPU-style runner (one child process per device) trains next to a thread runner', async () => {
  // --devices gpu:0 takes the GPU path: a child process with CUDA_VISIBLE_DEVICES=0. Without CUDA
  // here, the process runs the backend CHORUS_BACKEND names (wasm in tests): same code path.
  const g = h.chorus([
    'worker',
    '--coordinator',
    coord.address,
    '--devices',
    'gpu:0',
    '--name',
    'gpuish',
    '--token',
    h.TOKENS.worker,
    '--cache-dir',
    cache,
    ...h.DATA_ROOT,
  ]);
  procs.push(g);
  await h.waitFor(g, /(registered as \S+)/, 30_000);
  const c = h.client(coord.address);
  try {
    h.writeTaskData(join(dir, 'two.jsonl'), 8, 8, 2);
    const id = await c.submit(
      h.jobSpec(dir, {
        base_model: join(dir, 'model2'),
        tasks: [{ name: 't', data: { train: join(dir, 'two.jsonl') }, replicas: 2 }],
        sync: { mode: 'gradients' },
      }),
    );
    const job = await c.wait(id);
    assert.equal(job.state, 'succeeded', `${job.reason}\n${g.output()}`);
    assert.deepEqual(job.shards.map((s) => s.device).sort(), ['cpu:0', 'gpu:0']);
  } finally {
    c.close();
  }
});
