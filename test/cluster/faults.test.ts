// Failures on a live cluster, each checked by its RESULT: the downloaded adapter must equal, bit for
// bit, the same gradient-synced spec trained without faults (two replicas in one process,
// test/cluster/reference.ts).
//   1. A worker is killed with SIGKILL mid-job: its shard moves to a spare worker, resumes at its
//      last checkpoint (the exact step is asserted) and replays the steps it lost.
//   2. The coordinator is killed mid-job, a worker dies while it is down, the coordinator restarts
//      (state from JetStream KV): the moved replica resumes at its checkpoint and replays gradient
//      sums that only the old coordinator computed, from the object store (at least one replay is
//      asserted).
// Every wait has a deadline; a kill that never fires fails the test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import { activeLayersAt } from '../../shared/coto/schedule.ts';
import { parseJobSpec, taskOf } from '../../shared/job/parse.ts';
import { ChorusRpcError, type ChorusClient } from '../../shared/client/index.ts';
import type { ChorusEvent } from '../../shared/nats/events.ts';
import * as h from './helpers.ts';
import { bitDifferences, gradientSyncReference, type ReferenceRun } from './reference.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const workers = new Map<string, h.Proc>();
const procs: h.Proc[] = [];

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeMaskedTaskData(join(dir, 'a.jsonl'), 18, 5, 12, 4);
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
const EVERY = 4;
const spec = h.jobSpec(dir, {
  training: h.smallTraining(STEPS, EVERY),
  tasks: [{ name: 'a', data: { train: join(dir, 'a.jsonl') }, replicas: 2 }],
  sync: { mode: 'gradients' },
});
// Computed once, when the first job has ended: it holds this process's event loop while it trains.
let reference: Promise<ReferenceRun> | null = null;
const faultFree = () => (reference ??= gradientSyncReference(spec, 'a'));

const KILL_AT = 6; // ≡ 2 (mod EVERY): the last checkpoint before the kill is 4, with steps to replay.

/**
 * Follows the job's events into `into` until it ends; calls `fire` once, when replica 1 reports step
 * KILL_AT. The watch must end with the job, or (with `breaks`) with the coordinator's death.
 */
async function follow(c: ChorusClient, id: string, into: ChorusEvent[], fire: () => void): Promise<void> {
  let fired = false;
  for await (const ev of c.watch(id)) {
    into.push(ev);
    if (!fired && ev.type === 'metrics' && ev.data.replica === 1 && ev.data.step >= KILL_AT) {
      fired = true;
      fire();
    }
    if (ev.type === 'job.state' && ['succeeded', 'failed', 'cancelled'].includes(ev.data.state)) return;
  }
}

/**
 * The step replica 1's replacement must resume at: its last checkpoint when it died. `last` is the
 * highest step it reported before dying; every checkpoint below `last` was recorded before that
 * report (a runner's messages are forwarded in order), and a checkpoint AT `last` only if it got
 * out before the kill, so that one case admits two answers.
 */
function expectedResume(last: number): number[] {
  const below = Math.floor((last - 1) / EVERY) * EVERY;
  return last % EVERY === 0 ? [below, last] : [below];
}

/** Checks the move of replica 1 in the event log; returns its resume step. */
function checkMove(events: ChorusEvent[], victimName: string, lastBeforeFailure: number): number {
  const moves = events.filter((e) => e.type === 'shard.assigned' && e.data.replica === 1);
  assert.ok(moves.length >= 2, 'replica 1 was assigned again');
  const move = moves[moves.length - 1];
  assert.ok(move.type === 'shard.assigned');
  assert.notEqual(move.data.workerName, victimName, 'moved to another worker');
  assert.ok(
    expectedResume(lastBeforeFailure).includes(move.data.resumeStep),
    `resumed at ${move.data.resumeStep}; replica 1 had reached step ${lastBeforeFailure}, so its last checkpoint is ${expectedResume(lastBeforeFailure).join(' or ')}`,
  );
  // The replacement's first step is the one after its checkpoint (the runner restored that step).
  const restarted = events.filter((e) => e.type === 'shard.started' && e.data.replica === 1).pop();
  assert.ok(restarted && restarted.type === 'shard.started');
  assert.equal(restarted.data.step, move.data.resumeStep + 1);
  return move.data.resumeStep;
}

/**
 * `exactCounts`: after a worker loss the counts are exact. After a coordinator crash the steps
 * reported since its last save of the job record are lost for a replica that does not replay them
 * (docs/CLUSTER.md, known gaps): never above the schedule, at most 2 checkpoint intervals below.
 */
async function checkResult(c: ChorusClient, id: string, out: string, exactCounts: boolean): Promise<void> {
  await c.downloadResult(id, out);
  const got = await readPeftAdapter(join(out, 'a'));
  assert.deepEqual(bitDifferences(got, (await faultFree()).adapter), [], 'differs from the fault-free run');
  // Per-layer activation counts: each replica's steps count once, however often a move replayed them.
  const task = taskOf(parseJobSpec(spec), 'a');
  const layers = 2;
  const expected = Array.from(
    { length: layers },
    (_, l) =>
      2 *
      Array.from({ length: STEPS }, (_, s) => activeLayersAt(task.coto, task.seed, s, STEPS, layers)[l]).filter(Boolean)
        .length,
  );
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
  const counts: number[] = report.tasks[0].layers.map((l: { activations: number }) => l.activations);
  if (exactCounts) assert.deepEqual(counts, expected, 'activation counts (replayed steps counted twice?)');
  else
    assert.ok(
      counts.every((n, l) => n <= expected[l] && n >= expected[l] - 2 * EVERY),
      `activation counts ${counts} vs the schedule's ${expected}`,
    );
}

const lastStepOf = (events: ChorusEvent[], replica: number, worker: string) =>
  Math.max(
    ...events.map((e) =>
      e.type === 'metrics' && e.data.replica === replica && e.data.shardId && workerOf(events, e) === worker
        ? e.data.step
        : 0,
    ),
  );

/** Worker name that ran the shard when `e` was published (the latest assignment before it). */
function workerOf(events: ChorusEvent[], e: ChorusEvent): string {
  let name = '';
  for (const x of events) {
    if (x === e) break;
    if (x.type === 'shard.assigned' && e.type === 'metrics' && x.data.shardId === e.data.shardId)
      name = x.data.workerName;
  }
  return name;
}

test('a worker killed with SIGKILL mid-job: its shard resumes at its last checkpoint elsewhere; the result is the fault-free one', async () => {
  const c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 3);
    const id = await c.submit(spec);
    const events: ChorusEvent[] = [];
    let victim = '';
    let killed: Promise<void> | null = null;
    await h.withDeadline(
      follow(c, id, events, () => {
        killed = c.get(id).then((job) => {
          victim = job.shards[1].workerId.slice(0, job.shards[1].workerId.indexOf('-'));
          workers.get(victim)!.child.kill('SIGKILL');
        });
      }),
      120_000,
      'the job to end',
      procs,
    );
    assert.ok(killed, `replica 1 never reached step ${KILL_AT}: the kill never fired`);
    await h.withDeadline(killed!, 10_000, 'the kill');
    const job = await c.get(id);
    assert.equal(job.state, 'succeeded', `${job.reason}\n${coord.output()}`);
    const failed = events.filter((e) => e.type === 'shard.failed');
    assert.equal(failed.length, 1);
    assert.ok(failed[0].type === 'shard.failed' && failed[0].data.replica === 1 && failed[0].data.willRetry);
    const upToFailure = events.slice(0, events.indexOf(failed[0]));
    checkMove(events, victim, lastStepOf(upToFailure, 1, victim));
    await checkResult(c, id, join(dir, 'out1'), true);
  } finally {
    c.close();
  }
});

test('the coordinator killed mid-job, a worker killed while it is down, the coordinator restarted: stored sums replayed, result fault-free', async () => {
  const spare = h.startWorker(coord.address, 'f4');
  workers.set('f4', spare);
  procs.push(spare);
  let c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 3);
    const id = await c.submit(spec);
    const events: ChorusEvent[] = [];
    let fired = false;
    // Watch until replica 1 reaches KILL_AT, then kill the coordinator: the watch must break with it.
    const broke = await h
      .withDeadline(
        follow(c, id, events, () => {
          fired = true;
          coord.child.kill('SIGKILL');
        }),
        120_000,
        'the coordinator kill',
        procs,
      )
      .then(
        () => null,
        (err: unknown) => err,
      );
    assert.ok(fired, 'the kill never fired');
    assert.ok(
      broke instanceof ChorusRpcError && broke.code === 14,
      `the watch should break with the coordinator (UNAVAILABLE), got: ${String(broke)}`,
    );
    await h.withDeadline(coord.exited, 10_000, 'the coordinator to exit');
    c.close();
    // While no coordinator runs, the worker of replica 1 dies too: after the restart its shard
    // must resume on the spare from its checkpoint and replay gradient sums that only the old
    // coordinator computed (they are durable in the object store).
    const record = events.filter((e) => e.type === 'shard.assigned' && e.data.replica === 1).pop();
    assert.ok(record && record.type === 'shard.assigned');
    const victimName = record.data.workerName;
    const last = lastStepOf(events, 1, victimName);
    const victim = workers.get(victimName)!;
    victim.child.kill('SIGKILL');
    await h.withDeadline(victim.exited, 10_000, 'the worker to exit');
    const address = coord.address;
    coord = await h.startCoordinatorAt(prefix, address);
    procs.push(coord);
    c = h.client(address);
    const all: ChorusEvent[] = [];
    const job = await h.withDeadline(
      c.wait(id, (e) => all.push(e)),
      120_000,
      'the job to end after the restart',
      procs,
    );
    assert.equal(job.state, 'succeeded', `${job.reason}\n${procs.map((p) => p.output().slice(-3000)).join('\n---\n')}`);
    assert.ok(job.shards.every((s) => s.step === STEPS));
    const resume = checkMove(all, victimName, last);
    const replays = [
      ...coord.output().matchAll(/replica 1 of a replays step (\d+) with the sum stored in the object store/g),
    ].map((m) => Number(m[1]));
    assert.ok(replays.length >= 1, `no stored sum was replayed:\n${coord.output()}`);
    assert.ok(
      replays.every((s) => s >= resume && s <= last),
      `replayed steps ${replays.join(',')} should lie in [${resume}, ${last}]`,
    );
    await checkResult(c, id, join(dir, 'out2'), false);
  } finally {
    c.close();
  }
});
