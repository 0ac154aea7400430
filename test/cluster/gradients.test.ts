// sync: gradients — R replicas on separate worker processes exchange gradient sums every optimiser
// step; the result must equal ONE process training on the global batch. Each replica's data slice
// is exactly one batch here (8 examples, 2 replicas, batch 4), so the single process with batch 8
// sees the same examples every step and the two runs differ only by float rounding.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import { objectNames } from '../../shared/nats/subjects.ts';
import { parseJobSpec, taskOf } from '../../shared/job/parse.ts';
import { AdapterTrainer } from '../../shared/train/trainer.ts';
import { initEngine } from '../../shared/tensor/engine.ts';
import { loadExamples, loadModel } from '../../worker/runner/task-data.ts';
import * as h from './helpers.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
let workers: h.Proc[] = [];

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeTaskData(join(dir, 'a.jsonl'), 8, 8, 1, 4);
  coord = await h.startCoordinator(prefix);
  workers = [h.startWorker(coord.address, 'g1'), h.startWorker(coord.address, 'g2')];
});

after(async () => {
  await h.stopAll([...workers, coord]);
  await h.cleanNats(prefix);
});

const training = {
  steps: 5,
  batch_size: 4,
  seq_len: 8,
  lr: 0.02,
  warmup_steps: 0,
  eval_every: 0,
  checkpoint_every: 2,
  max_grad_norm: 1.0,
  weight_decay: 0.01,
};

test('2 gradient-synced replicas ≡ one process with the global batch', async (t) => {
  const c = h.client(coord.address);
  let clusterAdapter;
  let replicaBytes: Buffer[];
  try {
    await h.waitWorkers(c, 2);
    const spec = h.jobSpec(dir, {
      training,
      tasks: [{ name: 'a', data: { train: join(dir, 'a.jsonl') }, replicas: 2 }],
      sync: { mode: 'gradients' },
    });
    const id = await c.submit(spec);
    const job = await c.wait(id);
    assert.equal(job.state, 'succeeded', job.reason);
    assert.notEqual(job.shards[0].workerId, job.shards[1].workerId, 'replicas ran in different processes');
    await c.downloadResult(id, join(dir, 'out'));
    clusterAdapter = await readPeftAdapter(join(dir, 'out', 'a'));
    replicaBytes = await Promise.all([0, 1].map((r) => c.downloadBlob(objectNames.shardFinal(id, 'a', r))));
  } finally {
    c.close();
  }
  // The two replicas applied identical summed gradients: their adapters are bit-identical.
  assert.equal(Buffer.compare(replicaBytes[0], replicaBytes[1]), 0);

  // The single-process reference: same spec, one replica, batch 8.
  await initEngine(process.env.CHORUS_TEST_BACKEND ?? 'wasm', { quiet: true });
  const ref = parseJobSpec(
    h.jobSpec(dir, { training: { ...training, batch_size: 8 }, data: { train: join(dir, 'a.jsonl') } }),
  );
  const task = taskOf(ref);
  const model = await loadModel(task.baseModel);
  const trainer = AdapterTrainer.create({
    model,
    task,
    examples: await loadExamples(task.data.train, task.baseModel, model.config.vocabSize),
  });
  for (let s = 0; s < training.steps; s++) trainer.trainStep();
  const single = trainer.getAdapter();
  trainer.dispose();

  let maxDiff = 0;
  let maxAbs = 0;
  for (const [path, m] of single.modules) {
    const other = clusterAdapter.modules.get(path)!;
    for (const [x, y] of [
      [m.a, other.a],
      [m.b, other.b],
    ] as const) {
      for (let i = 0; i < x.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(x[i] - y[i]));
        maxAbs = Math.max(maxAbs, Math.abs(x[i]));
      }
    }
  }
  t.diagnostic(`max |single − cluster| = ${maxDiff.toExponential(2)}, max |w| = ${maxAbs.toFixed(3)}`);
  // B starts at zero and moved by ~lr per step: the diff must be float noise, not a different run.
  assert.ok(maxDiff <= 1e-5 * Math.max(1, maxAbs), `max |single − cluster| = ${maxDiff} (max |w| ${maxAbs})`);
  const b = [...single.modules.values()].reduce((s, m) => s + m.b.reduce((t, x) => t + Math.abs(x), 0), 0);
  assert.ok(b > 1e-3, 'the run trained something');
});
