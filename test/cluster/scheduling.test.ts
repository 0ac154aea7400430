// Scheduling on a live cluster: gang admission keeps a job queued (with the reason) until every
// shard has a device; jobs share the cluster; a cancelled job stops training on its workers and
// frees their devices; a worker that leaves on SIGTERM checkpoints where it stopped, its shard
// resumes at exactly that step elsewhere, and the result equals the uninterrupted run bit for bit.
// No check relies on a job still running after a fixed time: the long job below cannot finish
// (100 000 steps) and is cancelled, and the SIGTERM fires on a step event (or the test fails).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ChorusClient } from '../../shared/client/index.ts';
import type { ChorusEvent } from '../../shared/nats/events.ts';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import * as h from './helpers.ts';
import { bitDifferences, gradientSyncReference } from './reference.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const procs: h.Proc[] = [];

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeMaskedTaskData(join(dir, 'a.jsonl'), 16, 5, 12, 4);
  coord = await h.startCoordinator(prefix);
  procs.push(coord);
});

after(async () => {
  await h.stopAll(procs);
  await h.cleanNats(prefix);
});

const spec = (steps: number, replicas = 2) =>
  h.jobSpec(dir, {
    training: h.smallTraining(steps, 3),
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

const workers = new Map<string, h.Proc>();
function addWorker(name: string): h.Proc {
  const w = h.startWorker(coord.address, name);
  workers.set(name, w);
  procs.push(w);
  return w;
}

test('gang admission, two jobs at once, cancel stops training and frees the devices', async () => {
  const c = h.client(coord.address);
  try {
    addWorker('s1');
    await h.waitWorkers(c, 1);
    const long = await c.submit(spec(100_000));
    const queued = await until(c, long, (j) => /needs 2, 1 free/.test(j.reason));
    assert.equal(queued.state, 'queued');
    assert.ok(
      queued.shards.every((s) => s.state === 'pending'),
      'no shard starts before the gang fits',
    );
    addWorker('s2');
    addWorker('s3');
    await until(c, long, (j) => j.state === 'running' && j.shards.every((s) => s.step >= 2));
    // Jobs share the cluster: a one-shard job takes the third device while the long one runs.
    const small = await c.submit(spec(2, 1));
    const smallDone = await h.withDeadline(c.wait(small), 60_000, 'the small job', procs);
    assert.equal(smallDone.state, 'succeeded', smallDone.reason);
    assert.equal((await c.get(long)).state, 'running', 'the long job ran meanwhile');

    // Cancel: the workers running the long job stop its runners (they say so), and its devices
    // serve the next job, which needs all three.
    const running = await c.get(long);
    const cancelled = await c.cancel(long, 'test is done with it');
    assert.equal(cancelled.state, 'cancelled');
    assert.equal(cancelled.reason, 'test is done with it');
    for (const shard of running.shards) {
      const w = workers.get(shard.workerId.slice(0, shard.workerId.indexOf('-')))!;
      await h.waitFor(w, new RegExp(`shard ${shard.id} cancelled: test is done with it`), 30_000);
    }
    const stoppedAt = (await c.get(long)).shards.map((s) => s.step);
    const next = await c.submit(spec(3, 3));
    const ok = await h.withDeadline(c.wait(next), 60_000, 'the job after the cancel', procs);
    assert.equal(ok.state, 'succeeded', ok.reason);
    assert.deepEqual(
      (await c.get(long)).shards.map((s) => s.step),
      stoppedAt,
      'the cancelled job moved on',
    );
  } finally {
    c.close();
  }
});

test('graceful exit on SIGTERM: the shard resumes at the step its worker stopped at; the result is the uninterrupted one', async () => {
  const STEPS = 30;
  const synced = h.jobSpec(dir, {
    training: h.smallTraining(STEPS, 5),
    tasks: [{ name: 'a', data: { train: join(dir, 'a.jsonl') }, replicas: 2 }],
    sync: { mode: 'gradients' },
  });
  // Computed first: it holds this process's event loop while it trains.
  const reference = await gradientSyncReference(synced, 'a');
  for (const name of ['s1', 's2', 's3']) if (!workers.has(name)) addWorker(name);
  const c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 3);
    const id = await c.submit(synced);
    // SIGTERM the worker of replica 1 once it has trained 6 steps (the job has 30).
    const running = await h.whenStep(c, id, 1, 6);
    const leavingName = running.shards[1].workerId.slice(0, running.shards[1].workerId.indexOf('-'));
    const w = workers.get(leavingName)!;
    w.child.kill('SIGTERM');
    const events: ChorusEvent[] = [];
    await h.withDeadline(
      c.wait(id, (ev) => events.push(ev)),
      120_000,
      'the job to end',
      procs,
    );
    assert.equal(await h.withDeadline(w.exited, 30_000, 'the worker to leave'), 0, w.output());
    const stopped = Number(/stopped at step (\d+)/.exec(w.output())?.[1]);
    assert.ok(stopped >= 6 && stopped < STEPS, `worker output: ${w.output()}`);
    const done = await c.get(id);
    assert.equal(done.state, 'succeeded', done.reason);
    // Leaving is announced as a retried shard failure; nothing else fails.
    assert.ok(
      events.every((e) => e.type !== 'shard.failed' || (e.data.replica === 1 && e.data.willRetry)),
      'only the leaving replica is retried',
    );
    const move = events.filter((e) => e.type === 'shard.assigned' && e.data.replica === 1).pop();
    assert.ok(move && move.type === 'shard.assigned' && move.data.workerName !== leavingName, 'replica 1 moved');
    assert.equal(move.data.resumeStep, stopped, 'resumes exactly where the worker stopped');
    const restarted = events.filter((e) => e.type === 'shard.started' && e.data.replica === 1).pop();
    assert.ok(restarted && restarted.type === 'shard.started');
    assert.equal(restarted.data.step, stopped + 1);
    await c.downloadResult(id, join(dir, 'out'));
    const got = await readPeftAdapter(join(dir, 'out', 'a'));
    assert.deepEqual(bitDifferences(got, reference.adapter), [], 'differs from the uninterrupted run');
  } finally {
    c.close();
  }
});
