// Scheduling on a live cluster: gang admission keeps a job queued (with the reason) until every
// shard has a device; a worker that leaves on SIGTERM checkpoints and hands its shard over; a
// cancelled job frees its devices for the next one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ChorusClient } from '../../shared/client/index.ts';
import * as h from './helpers.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const procs: h.Proc[] = [];

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeTaskData(join(dir, 'a.jsonl'), 16, 8, 1, 4);
  coord = await h.startCoordinator(prefix);
  procs.push(coord);
});

after(async () => {
  await h.stopAll(procs);
  await h.cleanNats(prefix);
});

const spec = (steps: number, replicas = 2) =>
  h.jobSpec(dir, {
    training: { steps, batch_size: 4, seq_len: 8, lr: 0.01, warmup_steps: 0, eval_every: 0, checkpoint_every: 3 },
    tasks: [{ name: 'a', data: { train: join(dir, 'a.jsonl') }, replicas }],
    sync: { mode: 'weights', every: 3 },
  });

async function until(
  c: ChorusClient,
  id: string,
  pred: (j: Awaited<ReturnType<ChorusClient['get']>>) => boolean,
  ms = 30_000,
) {
  const start = Date.now();
  for (;;) {
    const j = await c.get(id);
    if (pred(j)) return j;
    if (Date.now() - start > ms)
      assert.fail(
        `timed out; job is ${j.state}: ${j.reason}\n${procs.map((p) => p.output().slice(-2000)).join('\n---\n')}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('gang admission, two jobs at once, graceful worker exit on SIGTERM, cancel', async () => {
  const c = h.client(coord.address);
  try {
    const w1 = h.startWorker(coord.address, 's1');
    procs.push(w1);
    await h.waitWorkers(c, 1);
    // Long enough that replica 1 is still training when its worker gets SIGTERM below, even on an
    // idle machine (60 steps once finished in 4 s, before the small job was done).
    const id = await c.submit(spec(200));
    const queued = await until(c, id, (j) => /needs 2, 1 free/.test(j.reason));
    assert.equal(queued.state, 'queued');
    assert.ok(
      queued.shards.every((s) => s.state === 'pending'),
      'no shard starts before the gang fits',
    );

    const w2 = h.startWorker(coord.address, 's2');
    procs.push(w2);
    const w3 = h.startWorker(coord.address, 's3');
    procs.push(w3);
    await until(c, id, (j) => j.state === 'running' && j.shards.some((s) => s.step >= 4));
    // Jobs share the cluster: a one-shard job takes the third device while the first job runs.
    const small = await c.submit(spec(2, 1));
    await until(c, small, (j) => j.state !== 'queued');
    assert.equal((await c.get(id)).state, 'running', 'the first job runs meanwhile');
    const smallDone = await c.wait(small);
    assert.equal(smallDone.state, 'succeeded', smallDone.reason);
    // SIGTERM the worker running replica 1: it finishes its step, checkpoints and leaves.
    const job = await c.get(id);
    const leaving = job.shards[1].workerId.startsWith('s1') ? w1 : job.shards[1].workerId.startsWith('s2') ? w2 : w3;
    leaving.child.kill('SIGTERM');
    assert.equal(await leaving.exited, 0, leaving.output());
    assert.match(leaving.output(), /stopped at step \d+/);
    const done = await c.wait(id);
    assert.equal(done.state, 'succeeded', done.reason);
    assert.equal(done.shards[1].attempts, 2);

    // Cancel: a long job is cancelled while running; its devices serve the next job.
    const long = await c.submit(spec(100000));
    await until(c, long, (j) => j.state === 'running');
    const cancelled = await c.cancel(long, 'test is done with it');
    assert.equal(cancelled.state, 'cancelled');
    assert.equal(cancelled.reason, 'test is done with it');
    const next = await c.submit(spec(3));
    const ok = await c.wait(next);
    assert.equal(ok.state, 'succeeded', ok.reason);
  } finally {
    c.close();
  }
});
