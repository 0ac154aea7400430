// End to end on loopback: a coordinator and two worker processes (2 CPU slots each) train a job of
// two tasks × two data-parallel replicas with weight rounds (sync: weights) and a final merge; the
// result downloads as PEFT directories that the PEFT reader loads; `watch` replays the finished
// job's events from the first one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import type { ChorusEvent } from '../../shared/nats/events.ts';
import * as h from './helpers.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
let workers: h.Proc[] = [];
let jobId = '';
const STEPS = 6;
const EVERY = 2;

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeTaskData(join(dir, 'a.jsonl'), 16, 8, 1, 1);
  h.writeTaskData(join(dir, 'b.jsonl'), 16, 8, 3, 2);
  coord = await h.startCoordinator(prefix);
  workers = [h.startWorker(coord.address, 'n1', 'cpu:2'), h.startWorker(coord.address, 'n2', 'cpu:2')];
});

after(async () => {
  await h.stopAll([...workers, coord]);
  await h.cleanNats(prefix);
});

test('2 tasks × 2 replicas with weight rounds and a final merge → PEFT directories and a report', async () => {
  const c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 2);
    const spec = h.jobSpec(dir, {
      training: {
        steps: STEPS,
        batch_size: 4,
        seq_len: 8,
        lr: 0.01,
        warmup_steps: 0,
        eval_every: 0,
        checkpoint_every: 2,
      },
      tasks: [
        { name: 'count1', data: { train: join(dir, 'a.jsonl') }, replicas: 2 },
        { name: 'count3', data: { train: join(dir, 'b.jsonl') }, replicas: 2 },
      ],
      sync: { mode: 'weights', every: EVERY, method: 'mean' },
      merge: { method: 'linear', weights: [0.5, 0.5] },
    });
    jobId = await c.submit(spec);
    const job = await c.wait(jobId);
    assert.equal(job.state, 'succeeded', `${job.state}: ${job.reason}\n${coord.output()}`);
    // Gang admission spread the 4 shards over both workers.
    assert.equal(new Set(job.shards.map((s) => s.workerId)).size, 2);

    const out = join(dir, 'out');
    const files = await c.downloadResult(jobId, out);
    assert.equal(files.length, 7);
    for (const task of ['count1', 'count3', 'merged']) {
      const cfg = JSON.parse(readFileSync(join(out, task, 'adapter_config.json'), 'utf8'));
      assert.equal(cfg.peft_type, 'LORA');
      const adapter = await readPeftAdapter(join(out, task));
      assert.equal(adapter.modules.size, 2 * 2); // 2 layers × (q_proj, v_proj)
      for (const m of adapter.modules.values())
        assert.ok(
          m.b.some((x) => x !== 0),
          'B moved away from its zero init',
        );
    }
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    assert.equal(report.tasks.length, 2);
    for (const t of report.tasks) {
      assert.equal(t.layers.length, 2);
      // Activation counts: every optimiser step of both replicas activated at least one layer.
      const total = t.layers.reduce((s: number, l: { activations: number }) => s + l.activations, 0);
      assert.ok(total >= STEPS * 2 && total <= STEPS * 2 * 2, `activations ${total}`);
      assert.equal(
        t.layers.filter((l: { shapley: number | null }) => typeof l.shapley === 'number').length,
        2,
        'Shapley per layer',
      );
      // Efficiency: the layers' Shapley values add up to what all adapters together gain.
      const sum = t.layers.reduce((s: number, l: { shapley: number }) => s + l.shapley, 0);
      assert.ok(
        Math.abs(sum - (t.coalitionLoss.noAdapters - t.coalitionLoss.allAdapters)) < 1e-9,
        `Σφ ${sum} vs ${JSON.stringify(t.coalitionLoss)}`,
      );
      assert.ok(t.coalitionLoss.allAdapters < t.coalitionLoss.noAdapters, 'the trained adapters lower the loss');
    }
    assert.equal(report.merge.method, 'linear');
  } finally {
    c.close();
  }
});

test('watch replays a finished job from its first event to its end', async () => {
  assert.ok(jobId, 'needs the job of the previous test');
  const c = h.client(coord.address);
  try {
    const events: ChorusEvent[] = [];
    for await (const ev of c.watch(jobId)) events.push(ev);
    assert.equal(events[0].type, 'job.submitted');
    const last = events[events.length - 1];
    assert.equal(last.type, 'job.state');
    assert.equal(last.type === 'job.state' && last.data.state, 'succeeded');
    const states = events.flatMap((e) => (e.type === 'job.state' ? [e.data.state] : []));
    assert.deepEqual(states, ['queued', 'running', 'merging', 'succeeded']);
    const metrics = events.filter((e) => e.type === 'metrics');
    assert.equal(metrics.length, STEPS * 4);
    const ready = events.filter((e) => e.type === 'round.adapter_ready');
    const merged = events.filter((e) => e.type === 'round.merged');
    assert.equal(merged.length, 2 * (STEPS / EVERY), 'one merge per task and round, never twice');
    assert.equal(ready.length, 4 * (STEPS / EVERY));
    for (const e of merged) if (e.type === 'round.merged') assert.match(e.data.sha256, /^[0-9a-f]{64}$/);
    assert.equal(events.filter((e) => e.type === 'shard.finished').length, 4);
    assert.ok(events.some((e) => e.type === 'merge.done'));
    assert.ok(events.some((e) => e.type === 'report.ready'));
    // Sequence numbers only grow: the stream's order.
    for (let i = 1; i < events.length; i++) assert.ok(events[i].seq! > events[i - 1].seq!);
  } finally {
    c.close();
  }
});

test('the CLI lists, shows and watches the job', async () => {
  const env = { CHORUS_COORDINATOR: coord.address, CHORUS_TOKEN: h.TOKENS.client };
  const jobs = h.chorus(['jobs'], env);
  assert.equal(await jobs.exited, 0, jobs.output());
  assert.match(jobs.output(), new RegExp(`${jobId}\\s+succeeded\\s+4/4`));
  const watch = h.chorus(['watch', jobId, '--json'], env);
  assert.equal(await watch.exited, 0, watch.output());
  const lines = watch
    .output()
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'));
  assert.equal(JSON.parse(lines[0]).type, 'job.submitted');
  const workers = h.chorus(['workers'], env);
  assert.equal(await workers.exited, 0);
  assert.match(workers.output(), /n1 .* online .*cpu:0, cpu:1/);
});
