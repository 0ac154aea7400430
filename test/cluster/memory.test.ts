// Placement by memory with real processes on loopback: workers report each device's memory at registration
// (--memory sets it); a job whose memory plan fits no device stays queued with the plan's refusal as its
// reason, and starts once a worker that fits joins; what no device can change is refused at submit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as h from './helpers.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp('chorus-memory-');
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const procs: h.Proc[] = [];

function worker(name: string, memory: string): h.Proc {
  const p = h.startWorker(coord.address, name, 'cpu:1', [...h.DATA_ROOT, '--memory', memory]);
  procs.push(p);
  return p;
}

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeTaskData(join(dir, 'train.jsonl'), 8, 8, 1);
  writeFileSync(join(dir, 'job.json'), h.jobSpec(dir, { data: { train: join(dir, 'train.jsonl') } }));
  writeFileSync(
    join(dir, 'long.json'),
    h.jobSpec(dir, { data: { train: join(dir, 'train.jsonl') }, training: { steps: 2, seq_len: 4096 } }),
  );
  coord = await h.startCoordinator(prefix);
  procs.push(coord);
});

after(async () => {
  await h.stopAll(procs);
  await h.cleanNats(prefix);
});

test('a job that fits no device waits with a reason naming the estimate and the limit, then runs where it fits', async () => {
  const c = h.client(coord.address);
  try {
    worker('small', '300MiB');
    await h.waitWorkers(c, 1);
    const [small] = await c.workers();
    assert.deepEqual(
      small.devices.map((d) => [d.id, d.memoryBytes]),
      [['cpu:0', 300 * 1024 ** 2]],
      'the device reports --memory',
    );
    const id = await c.submitFile(join(dir, 'job.json'));
    let job = await c.get(id);
    for (let i = 0; i < 100 && !/no device fits/.test(job.reason); i++) {
      await new Promise((r) => setTimeout(r, 100));
      job = await c.get(id);
    }
    assert.equal(job.state, 'queued');
    assert.match(
      job.reason,
      /no device fits shard .*: tasks\[0\]\.training: batch_size 4 × seq_len 8 .*needs about [\d.]+ \w+ of process memory, over cpu:0's reported memory \(300 MiB/,
    );
    worker('big', '8GiB');
    job = await c.wait(id);
    assert.equal(job.state, 'succeeded', job.reason);
    assert.ok(
      job.shards.every((s) => s.workerId !== small.id),
      'never placed on the device it does not fit',
    );
  } finally {
    c.close();
  }
});

test('seq_len past the model positions is refused at submit, naming the field', async () => {
  const c = h.client(coord.address);
  try {
    await assert.rejects(
      c.submitFile(join(dir, 'long.json')),
      /tasks\[0\]\.training\.seq_len: 4096 exceeds the model's max_position_embeddings \(2048\)/,
    );
  } finally {
    c.close();
  }
});
