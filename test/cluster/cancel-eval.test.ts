// A job's per-layer Shapley evaluation runs on a worker's device after training and merging. When
// the job goes away while it runs — cancelled, or forgotten by a coordinator restart — the worker
// stops the evaluation at once and the device serves the next job (no waiting for an evaluation
// nobody will read). The evaluation is made long on purpose: greedy generation over a large eval
// set (training.eval_generate), far longer than the test's deadlines.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ChorusClient } from '../../shared/client/index.ts';
import * as h from './helpers.ts';

const root = new URL('../..', import.meta.url).pathname;
const base = join(root, 'demo/base');
const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
let worker: h.Proc;
const procs = () => [coord, worker];

before(async () => {
  h.writeDemoTask(dir, 'rotrev', 16, 4000);
  coord = await h.startCoordinator(prefix);
  worker = h.startWorker(coord.address, 'e1', 'cpu:1', [...h.DATA_ROOT, '--data-root', join(root, 'demo')]);
});

after(async () => {
  await h.stopAll(procs());
  await h.cleanNats(prefix);
});

/** A CoTo job on the demo model; `longEval`: its evaluation generates answers for 4000 examples. */
const spec = (longEval: boolean) =>
  JSON.stringify({
    name: longEval ? 'long-eval' : 'next',
    base_model: base,
    seed: 3,
    lora: { r: 4, alpha: 8, target_modules: ['q_proj', 'v_proj'] },
    training: {
      steps: 2,
      batch_size: 4,
      seq_len: 24,
      lr: 0.01,
      warmup_steps: 0,
      eval_every: 0,
      checkpoint_every: 0,
      ...(longEval ? { eval_generate: { tokens: 64 } } : {}),
    },
    tasks: [
      {
        name: 'rotrev',
        data: { train: join(dir, 'train.jsonl'), ...(longEval ? { eval: join(dir, 'eval.jsonl') } : {}) },
      },
    ],
    merge: 'none',
  });

/** Submits the long job and resolves once the worker evaluates it: the request id and the device's entry. */
async function evaluating(c: ChorusClient): Promise<{ jobId: string; requestId: string }> {
  const seen = (worker.output().match(/evaluating \d+ layer coalition/g) ?? []).length;
  const jobId = await c.submit(spec(true));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const busy = (await c.workers()).flatMap((w) => w.shards).find((s) => s.startsWith(`${jobId}-eval-`));
    const started = (worker.output().match(/evaluating \d+ layer coalition/g) ?? []).length > seen;
    if (busy && started) return { jobId, requestId: busy };
    if (Date.now() > deadline)
      assert.fail(`the evaluation never started: ${(await c.get(jobId)).reason}\n${worker.output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The next job is placed on the (only) device and succeeds within `ms`. */
async function nextJobRuns(c: ChorusClient, ms: number): Promise<void> {
  const next = await c.submit(spec(false));
  const done = await h.withDeadline(c.wait(next), ms, 'the job after the evaluation was stopped', procs());
  assert.equal(done.state, 'succeeded', done.reason);
}

test('cancel during the Shapley evaluation stops it on the worker and frees the device at once', async () => {
  const c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 1);
    const { jobId, requestId } = await evaluating(c);
    const cancelled = await c.cancel(jobId, 'test cancels the evaluation');
    assert.equal(cancelled.state, 'cancelled');
    await h.waitFor(worker, new RegExp(`evaluation ${requestId} cancelled: test cancels the evaluation`), 5_000);
    const busy = (await c.workers()).flatMap((w) => w.shards);
    assert.ok(!busy.includes(requestId), `the device is still reserved for ${requestId}: ${busy}`);
    await nextJobRuns(c, 20_000);
    assert.equal((await c.get(jobId)).state, 'cancelled');
  } finally {
    c.close();
  }
});

test('a restarted coordinator stops an evaluation it does not know; the device serves the next job', async () => {
  let c = h.client(coord.address);
  const { jobId, requestId } = await evaluating(c);
  c.close();
  coord.child.kill('SIGKILL');
  await coord.exited;
  coord = await h.startCoordinatorAt(prefix, coord.address);
  c = h.client(coord.address);
  try {
    // The worker re-registers naming the evaluation; the new coordinator has no request by that id.
    await h.waitFor(worker, new RegExp(`evaluation ${requestId} cancelled`), 15_000);
    // The job itself was merging: the restarted coordinator finishes it again (its evaluation may
    // start anew); cancelling it must free the device either way.
    const job = await c.get(jobId);
    if (job.state === 'merging') await c.cancel(jobId, 'test is done with it');
    await nextJobRuns(c, 30_000);
  } finally {
    c.close();
  }
});
