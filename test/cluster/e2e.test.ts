// End to end on loopback: a coordinator and two worker processes (2 CPU slots each) train a job of
// two tasks × two data-parallel replicas with weight rounds (sync: weights) and a final merge; the
// result downloads as PEFT directories that the PEFT reader loads; `watch` replays the finished
// job's events from the first one. The results are recomputed here from what the cluster stored:
// every round's reconciliation (Eckart–Young against the float64 mean of the replicas' ΔW), the
// final linear merge (float64), the per-layer Shapley values (coalition losses of the independent
// float64 Llama, test/model/reference.ts) and the activation counts (the CoTo mask function).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { adapterFromObjectBytes, readPeftAdapter } from '../../shared/formats/peft.ts';
import { readHfModelDir } from '../../shared/formats/hf-model.ts';
import { parseLlamaConfig } from '../../shared/model/config.ts';
import { activeLayersAt } from '../../shared/coto/schedule.ts';
import { parseJobSpec, taskOf } from '../../shared/job/parse.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';
import type { ChorusEvent } from '../../shared/nats/events.ts';
import type { ChorusClient } from '../../shared/client/index.ts';
import { refLoss, type RefConfig, type RefWeights } from '../model/reference.ts';
import { refLoraOf } from '../model/fixture.ts';
import { deltaOf, frob2, refSingularValues } from '../merge/helpers.ts';
import * as h from './helpers.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
let workers: h.Proc[] = [];
let jobId = '';
let specText = '';
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

/** The tiny base model as the float64 reference sees it (read back from the model directory). */
async function refModel(): Promise<{ cfg: RefConfig; w: RefWeights }> {
  const { config, tensors } = await readHfModelDir(join(dir, 'model'));
  const c = parseLlamaConfig(config, 'model');
  const cfg: RefConfig = {
    hidden: c.hiddenSize,
    intermediate: c.intermediateSize,
    layers: c.numHiddenLayers,
    heads: c.numAttentionHeads,
    kvHeads: c.numKeyValueHeads,
    headDim: c.headDim,
    vocab: c.vocabSize,
    eps: c.rmsNormEps,
    theta: c.ropeTheta,
    tie: c.tieWordEmbeddings,
    ropeScaling: null,
  };
  return { cfg, w: new Map([...tensors].map(([k, t]) => [k, Float64Array.from(t.data)])) };
}

/**
 * Shapley values of the 2 layers' adapters, v(S) = −loss with only S's adapters on, over the task's
 * training file (the coalition evaluation's data when a task has no eval set: all 16 lines).
 */
async function refShapley(adapter: LoraAdapter, file: string): Promise<number[]> {
  const { cfg, w } = await refModel();
  const ids = readFileSync(join(dir, `${file}.jsonl`), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l).input_ids as number[]);
  const mask = ids.map((row) => row.map((_, t) => (t === 0 ? 0 : 1)));
  const lora = refLoraOf(adapter);
  const v = (l0: boolean, l1: boolean) => -refLoss(cfg, w, ids, mask, lora, [l0, l1]);
  return [
    0.5 * (v(true, false) - v(false, false) + (v(true, true) - v(false, true))),
    0.5 * (v(false, true) - v(false, false) + (v(true, true) - v(true, false))),
  ];
}

/**
 * Every round's reconciliation, recomputed from the replicas' uploaded adapters: the merged ΔW is
 * the best rank-r approximation of the float64 mean of the replicas' ΔW (residual = the energy
 * of the dropped singular values), and each task's result is its last round's merged adapter.
 */
async function checkRounds(c: ChorusClient, events: ChorusEvent[], out: string): Promise<void> {
  const download = async (name: string) => adapterFromObjectBytes(await c.downloadBlob(name), name);
  const merges = events.flatMap((e) => (e.type === 'round.merged' ? [e.data] : []));
  let maxDropped = 0;
  assert.equal(merges.length, 2 * (STEPS / EVERY));
  for (const m of merges) {
    const replicas = events.flatMap((e) =>
      e.type === 'round.adapter_ready' && e.data.task === m.task && e.data.round === m.round ? [e.data] : [],
    );
    assert.deepEqual(replicas.map((r) => r.replica).sort(), [0, 1], `${m.task} round ${m.round}`);
    const inputs = await Promise.all(replicas.map((r) => download(r.object)));
    const merged = await download(m.object);
    for (const [path, mod] of merged.modules) {
      const deltas = inputs.map((a) => deltaOf(a.modules.get(path)!));
      const mean = deltas[0].map((row, i) => row.map((v, j) => (v + deltas[1][i][j]) / 2));
      const sigma = refSingularValues(mean);
      const dropped = sigma.slice(mod.rank).reduce((x, y) => x + y * y, 0);
      const got = deltaOf(mod).flat();
      const resid = frob2(got.map((v, i) => v - mean.flat()[i]));
      const scale = frob2(mean.flat());
      assert.ok(
        Math.abs(resid - dropped) <= 1e-5 * scale,
        `${m.task} round ${m.round} ${path}: residual ${resid} vs dropped energy ${dropped} (‖mean‖² ${scale})`,
      );
      maxDropped = Math.max(maxDropped, dropped / scale);
    }
    if (m.step === STEPS) {
      const result = await readPeftAdapter(join(out, m.task));
      for (const [path, mod] of merged.modules) {
        assert.deepEqual(result.modules.get(path)!.a, mod.a, `${m.task} ${path}.a is the last round's`);
        assert.deepEqual(result.modules.get(path)!.b, mod.b, `${m.task} ${path}.b is the last round's`);
      }
    }
  }
  // The replicas' A matrices drift apart, so some mean has rank > r and the truncation is exercised.
  assert.ok(maxDropped > 1e-9, `largest dropped energy fraction ${maxDropped}`);
}

test('2 tasks × 2 replicas with weight rounds and a final merge → PEFT directories and a report', async () => {
  const c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 2);
    specText = h.jobSpec(dir, {
      training: h.smallTraining(STEPS, 2),
      tasks: [
        { name: 'count1', data: { train: join(dir, 'a.jsonl') }, replicas: 2 },
        { name: 'count3', data: { train: join(dir, 'b.jsonl') }, replicas: 2 },
      ],
      sync: { mode: 'weights', every: EVERY, method: 'mean' },
      merge: { method: 'linear', weights: [0.5, 0.5] },
    });
    jobId = await c.submit(specText);
    const events: ChorusEvent[] = [];
    const job = await h.withDeadline(
      c.wait(jobId, (e) => events.push(e)),
      180_000,
      'the job to end',
      [coord, ...workers],
    );
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
      // Activation counts: each replica's step s trains the layers the CoTo mask function gives.
      const task = taskOf(parseJobSpec(specText), t.name);
      const expected = [0, 1].map(
        (l) =>
          2 *
          Array.from({ length: STEPS }, (_, s) => activeLayersAt(task.coto, task.seed, s, STEPS, 2)[l]).filter(Boolean)
            .length,
      );
      assert.deepEqual(
        t.layers.map((l: { activations: number }) => l.activations),
        expected,
      );
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
      // The values themselves: exact 2-layer Shapley of the float64 reference's coalition losses.
      const want = await refShapley(await readPeftAdapter(join(out, t.name)), t.name === 'count1' ? 'a' : 'b');
      t.layers.forEach((l: { shapley: number }, i: number) =>
        assert.ok(Math.abs(l.shapley - want[i]) <= 2e-5 + 1e-3 * Math.abs(want[i]), `φ${i} ${l.shapley} vs ${want[i]}`),
      );
    }
    assert.equal(report.merge.method, 'linear');
    await checkRounds(c, events, out);
    // The final merge: linear, weights 0.5 / 0.5, exact (default rank Σ r_k) — ΔW against float64.
    const [t1, t3, merged] = await Promise.all(
      ['count1', 'count3', 'merged'].map((n) => readPeftAdapter(join(out, n))),
    );
    for (const [path, m] of merged.modules) {
      const want = deltaOf(t1.modules.get(path)!).map((row, i) =>
        row.map((v, j) => 0.5 * v + 0.5 * deltaOf(t3.modules.get(path)!)[i][j]),
      );
      const got = deltaOf(m);
      const err = got.flat().reduce((e, v, i) => Math.max(e, Math.abs(v - want.flat()[i])), 0);
      assert.ok(err <= 1e-5 * Math.max(1, ...want.flat().map(Math.abs)), `merged ${path}: max |ΔW − ref| ${err}`);
    }
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
    // Every step of every shard has its metrics event. A shard that moved (a worker declared dead
    // under load) reports the steps after its checkpoint again; only then may a step repeat.
    const metrics = events.flatMap((e) => (e.type === 'metrics' ? [`${e.data.shardId}@${e.data.step}`] : []));
    assert.equal(new Set(metrics).size, STEPS * 4, 'one metrics event per shard and step');
    const placements = events.filter((e) => e.type === 'shard.assigned').length;
    if (metrics.length > STEPS * 4) assert.ok(placements > 4, 'steps repeat only after a shard moved');
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
  assert.match(workers.output(), /n1 .* online .*cpu:0( \([^)]*\))?, cpu:1/);
});
