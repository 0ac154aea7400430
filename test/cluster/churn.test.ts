// Retries that tell faults apart, on real processes: a gradient-synced job while a random busy worker
// is SIGKILLed every 2–5 s (and replaced at once) finishes with the adapter of an uninterrupted run
// bit for bit (the same spec's replicas trained in this process, reference.ts), although its shards
// lose their worker more often than their failure budget allows (the budget counts only failures of
// the shard's own run). The victim is drawn from the workers that hold a shard: killing an idle one
// proves nothing. A job that lost its workers and cannot take a step fails after the no-progress
// limit, with a reason that says so. A worker that loses its shard three times in a row before a
// step (killed and restarted under the same name) is named flapping and gets no more shards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import { SplitMix32 } from '../../shared/tensor/random.ts';
import type { ChorusClient } from '../../shared/client/index.ts';
import * as h from './helpers.ts';
import { bitDifferences, gradientSyncReference } from './reference.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
const MAX_FAILURES = 2;
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
const workers = new Map<string, h.Proc>();
const procs: h.Proc[] = [];
let spawned = 0;

function spawnWorker(): string {
  const name = `c${++spawned}`;
  const p = h.startWorker(coord.address, name);
  workers.set(name, p);
  procs.push(p);
  return name;
}

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeTaskData(join(dir, 'a.jsonl'), 16, 8, 1, 4);
  coord = await h.startCoordinator(prefix, ['--max-failures', String(MAX_FAILURES)]);
  procs.push(coord);
  for (let i = 0; i < 3; i++) spawnWorker();
});

after(async () => {
  await h.stopAll(procs);
  await h.cleanNats(prefix);
});

const spec = (steps: number) =>
  h.jobSpec(dir, {
    training: h.smallTraining(steps, 4),
    tasks: [{ name: 'a', data: { train: join(dir, 'a.jsonl') }, replicas: 2 }],
    sync: { mode: 'gradients' },
  });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Names of the live workers that hold a shard of the job. */
async function busyWorkers(c: ChorusClient, jobId: string): Promise<string[]> {
  const list = await c.workers();
  return list
    .filter((w) => w.shards.some((s) => s.startsWith(jobId)) && workers.get(w.name)?.child.exitCode === null)
    .map((w) => w.name);
}

function kill(name: string): void {
  const p = workers.get(name)!;
  workers.delete(name);
  p.child.kill('SIGKILL');
  spawnWorker();
}

test('a random busy worker killed every 2–5 s: the job ends with the fault-free adapter', async (t) => {
  const c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 3);
    const STEPS = 200;
    // The fault-free adapter: the same spec's replicas in this process (reference.ts), before the
    // job (it holds this event loop while it trains).
    const reference = await gradientSyncReference(spec(STEPS), 'a');

    const id = await c.submit(spec(STEPS));
    const rng = new SplitMix32(2024);
    let kills = 0;
    let ended = false;
    const done = c.wait(id).finally(() => (ended = true));
    done.catch(() => undefined); // awaited below; a broken watch must not count as unhandled meanwhile
    // Churn until some shard has lost its worker more often than its failure budget allows (the
    // old policy failed the job there), for a minute at most; then the job must finish.
    const until = Date.now() + 60_000;
    const mostLosses = async () => Math.max(...(await c.get(id)).shards.map((s) => s.attempts - 1));
    while (!ended && Date.now() < until && (await mostLosses()) <= MAX_FAILURES) {
      await sleep(2000 + (rng.next() % 3000));
      const busy = await busyWorkers(c, id).catch(() => []);
      if (ended || busy.length === 0) continue;
      kill(busy[rng.next() % busy.length]);
      kills++;
    }
    const job = await done;
    assert.equal(job.state, 'succeeded', job.reason);
    const lost = Math.max(...job.shards.map((s) => s.attempts - 1));
    t.diagnostic(`${kills} kills; most losses of one shard: ${lost}`);
    assert.ok(lost > MAX_FAILURES, `no shard lost its worker more than ${MAX_FAILURES} times (${lost})`);
    const out = h.tmp('chorus-churn-result-');
    await c.downloadResult(id, out);
    const got = await readPeftAdapter(join(out, 'a'));
    assert.deepEqual(bitDifferences(got, reference.adapter), [], 'differs from the fault-free run');
  } finally {
    c.close();
  }
});

test('a job that lost its workers and takes no step fails after the no-progress limit', async () => {
  // A cluster of its own, with a short limit.
  const own = h.uniquePrefix();
  const coord2 = await h.startCoordinator(own, ['--stall-timeout', '4s']);
  const mine = [coord2, ...['s1', 's2', 's3'].map((n) => h.startWorker(coord2.address, n))];
  procs.push(...mine);
  const c = h.client(coord2.address);
  try {
    await h.waitWorkers(c, 3);
    const id = await c.submit(spec(2000));
    let job = await c.get(id);
    while (!job.shards.some((s) => s.step > 0)) {
      await sleep(100);
      job = await c.get(id);
    }
    // Both replicas' workers die and nobody replaces them: one shard moves to the idle worker, the
    // other has nowhere to go, and the gradient-synced pair cannot take another step.
    const list = await c.workers();
    for (const w of list.filter((w) => w.shards.length > 0))
      mine.find((p) => p.child.spawnargs.includes(w.name))!.child.kill('SIGKILL');
    job = await c.wait(id);
    assert.equal(job.state, 'failed');
    assert.match(job.reason, /^no progress for \d+ s while its shards kept losing their workers \(last: /);
  } finally {
    c.close();
    await h.stopAll(mine);
    await h.cleanNats(own);
  }
});

test('a worker that keeps losing its shard before a step is named flapping and given no more shards', async () => {
  const own = h.uniquePrefix();
  const coord3 = await h.startCoordinator(own);
  const mine: h.Proc[] = [coord3];
  procs.push(coord3);
  const start = (name: string) => {
    const p = h.startWorker(coord3.address, name);
    mine.push(p);
    procs.push(p);
    return p;
  };
  let flappy = start('flappy');
  const c = h.client(coord3.address);
  try {
    await h.waitWorkers(c, 1);
    const one = h.jobSpec(dir, {
      data: { train: join(dir, 'a.jsonl') },
      training: { steps: 20, batch_size: 4, seq_len: 8, warmup_steps: 0, eval_every: 0, checkpoint_every: 4 },
    });
    const id = await c.submit(one);
    // Each time the shard lands on "flappy", that process dies at once and comes back under the same name.
    let kills = 0;
    const follow = (async () => {
      for await (const ev of c.watch(id)) {
        if (ev.type === 'shard.assigned' && ev.data.workerName === 'flappy' && kills < 3) {
          kills++;
          flappy.child.kill('SIGKILL');
          flappy = start('flappy');
        }
        if (ev.type === 'job.state' && ['succeeded', 'failed', 'cancelled'].includes(ev.data.state)) return;
      }
    })();
    follow.catch(() => undefined); // awaited below; closing the client in `finally` ends it
    await h.waitFor(coord3, /(worker flappy is flapping: lost 3 shards in a row before they took a step)/, 60_000);
    // Flappy is back online, but the shard waits for another worker.
    await h.waitFor(flappy, /(registered as \S+)/, 30_000);
    start('steady');
    await follow;
    const job = await c.get(id);
    assert.equal(job.state, 'succeeded', job.reason);
    assert.equal(kills, 3);
    assert.match(job.shards[0].workerId, /^steady-/, 'the shard finished on the steady worker');
  } finally {
    c.close();
    await h.stopAll(mine);
    await h.cleanNats(own);
  }
});
