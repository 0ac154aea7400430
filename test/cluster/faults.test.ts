// Failures on a live cluster: a worker killed with SIGKILL in the middle of a gradient-synced job
// (its shard moves to a spare worker, resumes from its checkpoint, replays the steps it lost from
// the coordinator's stored sums, and the replicas still end bit-identical); then the coordinator
// itself is killed mid-job, a worker dies while it is down, and the restarted coordinator carries
// on (state from JetStream KV, gradient sums from the object store, workers reconnect).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { objectNames } from '../../shared/nats/subjects.ts';
import type { ChorusEvent } from '../../shared/nats/events.ts';
import type { ChorusClient } from '../../shared/client/index.ts';
import * as h from './helpers.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const workers = new Map<string, h.Proc>();
const procs: h.Proc[] = [];

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeTaskData(join(dir, 'a.jsonl'), 16, 8, 1, 4);
  coord = await h.startCoordinator(prefix);
  procs.push(coord);
  for (const name of ['f1', 'f2', 'f3']) {
    const p = h.startWorker(coord.address, name);
    workers.set(name, p);
    procs.push(p);
  }
});

after(async () => {
  await h.stopAll(procs);
  await h.cleanNats(prefix);
});

const STEPS = 40;
const spec = () =>
  h.jobSpec(dir, {
    training: {
      steps: STEPS,
      batch_size: 4,
      seq_len: 8,
      lr: 0.01,
      warmup_steps: 0,
      eval_every: 0,
      checkpoint_every: 4,
    },
    tasks: [{ name: 'a', data: { train: join(dir, 'a.jsonl') }, replicas: 2 }],
    sync: { mode: 'gradients' },
  });

/** Resolves when some metrics event reaches `step`; collects all events into `into`. */
async function follow(
  c: ChorusClient,
  id: string,
  into: ChorusEvent[],
  onStep: { step: number; fn: () => void },
): Promise<void> {
  let fired = false;
  for await (const ev of c.watch(id)) {
    into.push(ev);
    if (!fired && ev.type === 'metrics' && ev.data.step >= onStep.step) {
      fired = true;
      onStep.fn();
    }
    if (ev.type === 'job.state' && ['succeeded', 'failed', 'cancelled'].includes(ev.data.state)) return;
  }
}

test('a worker killed with SIGKILL mid-job: its shard moves, resumes, and the job succeeds', async () => {
  const c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 3);
    const id = await c.submit(spec());
    const events: ChorusEvent[] = [];
    let victim = '';
    await follow(c, id, events, {
      step: 6,
      fn: () => {
        void c.get(id).then((job) => {
          const wid = job.shards[1].workerId;
          victim = wid.slice(0, wid.indexOf('-'));
          workers.get(victim)!.child.kill('SIGKILL');
        });
      },
    });
    const job = await c.get(id);
    assert.equal(job.state, 'succeeded', `${job.reason}\n${coord.output()}`);
    assert.ok(victim, 'a worker was killed');
    const failed = events.filter((e) => e.type === 'shard.failed');
    assert.equal(failed.length, 1);
    assert.ok(failed[0].type === 'shard.failed' && failed[0].data.willRetry);
    const moved = events.filter((e) => e.type === 'shard.assigned' && e.data.attempt === 2);
    assert.equal(moved.length, 1);
    assert.ok(
      moved[0].type === 'shard.assigned' &&
        moved[0].data.resumeStep >= 4 &&
        !moved[0].data.workerName.startsWith(victim),
      'resumed from a checkpoint on another worker',
    );
    // The moved replica replayed its lost steps with the stored sums: replicas still agree bit for bit.
    const finals = await Promise.all([0, 1].map((r) => c.downloadBlob(objectNames.shardFinal(id, 'a', r))));
    assert.equal(Buffer.compare(finals[0], finals[1]), 0);
  } finally {
    c.close();
  }
});

test('the coordinator killed mid-job, a worker killed while it is down, the coordinator restarted: the job succeeds', async (t) => {
  const spare = h.startWorker(coord.address, 'f4');
  workers.set('f4', spare);
  procs.push(spare);
  let c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 3);
    const id = await c.submit(spec());
    const events: ChorusEvent[] = [];
    // Watch until step 6, then kill the coordinator (the watch stream breaks with it).
    await follow(c, id, events, { step: 6, fn: () => coord.child.kill('SIGKILL') }).catch(() => undefined);
    await coord.exited;
    c.close();
    // While no coordinator runs, the worker of replica 1 dies too: after the restart its shard
    // must resume on the spare from its checkpoint and replay gradient sums that only the old
    // coordinator computed (they are durable in the object store).
    const record = events.filter((e) => e.type === 'shard.assigned' && e.data.replica === 1).pop();
    assert.ok(record && record.type === 'shard.assigned');
    const victim = workers.get(record.data.workerName)!;
    victim.child.kill('SIGKILL');
    await victim.exited;
    const address = coord.address;
    coord = await h.startCoordinatorAt(prefix, address);
    procs.push(coord);
    c = h.client(address);
    const job = await Promise.race([
      c.wait(id),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), 90_000).unref()),
    ]).catch((err) =>
      assert.fail(
        `${err.message}\n${procs.map((p) => `--- ${p.child.spawnargs.slice(2, 4).join(' ')}\n${p.output().slice(-3000)}`).join('\n')}`,
      ),
    );
    assert.equal(job.state, 'succeeded', `${job.reason}\n${procs.map((p) => p.output().slice(-3000)).join('\n---\n')}`);
    assert.ok(job.shards.every((s) => s.step === STEPS));
    assert.ok(job.shards[1].attempts >= 2, 'replica 1 moved');
    const finals = await Promise.all([0, 1].map((r) => c.downloadBlob(objectNames.shardFinal(id, 'a', r))));
    assert.equal(Buffer.compare(finals[0], finals[1]), 0, 'the replayed replica is bit-identical to the other');
    t.diagnostic(
      `durable sums replayed: ${(coord.output().match(/with the sum stored in the object store/g) ?? []).length}`,
    );
  } finally {
    c.close();
  }
});
