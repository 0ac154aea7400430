// The cluster's final scoring with training.eval_generate: a worker scores the finished task adapter
// by greedy generation with the shared scorer, and the coordinator's report (and coto.layers event)
// carry exact match and edit similarity — the same figures the library gives for the downloaded
// adapter on this machine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initEngine } from '../../shared/tensor/engine.ts';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import { LoraRuntime } from '../../shared/lora/runtime.ts';
import { loadTokenizer } from '../../shared/data/tokenizer.ts';
import { DataLoader, loadBaseModel } from '../../shared/train/load.ts';
import { scoreDataset } from '../../shared/eval/score.ts';
import * as h from './helpers.ts';

const root = new URL('../..', import.meta.url).pathname;
const base = join(root, 'demo/base');
const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
let workers: h.Proc[] = [];

before(async () => {
  h.writeDemoTask(dir, 'rotrev', 48, 12);
  coord = await h.startCoordinator(prefix);
  workers = [h.startWorker(coord.address, 'g1', 'cpu:1', [...h.DATA_ROOT, '--data-root', join(root, 'demo')])];
});

after(async () => {
  await h.stopAll([...workers, coord]);
  await h.cleanNats(prefix);
});

test('training.eval_generate: the report carries the library’s exact match and edit similarity', async () => {
  const c = h.client(coord.address);
  try {
    await h.waitWorkers(c, 1);
    const spec = JSON.stringify({
      name: 'generation',
      base_model: base,
      seed: 3,
      lora: { r: 4, alpha: 8, target_modules: ['q_proj', 'v_proj', 'down_proj'] },
      training: {
        steps: 8,
        batch_size: 8,
        seq_len: 24,
        lr: 0.01,
        warmup_steps: 0,
        eval_every: 0,
        checkpoint_every: 0,
        eval_generate: { stop: ['\n'] },
      },
      tasks: [{ name: 'rotrev', data: { train: join(dir, 'train.jsonl'), eval: join(dir, 'eval.jsonl') } }],
      merge: 'none',
    });
    const jobId = await c.submit(spec);
    const job = await c.wait(jobId);
    assert.equal(job.state, 'succeeded', `${job.state}: ${job.reason}\n${coord.output()}`);
    const out = join(dir, 'out');
    await c.downloadResult(jobId, out);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    const g = report.tasks[0].generation;
    assert.ok(g, `the report has generation scores: ${JSON.stringify(report.tasks[0])}`);
    assert.equal(g.examples, 12);

    await initEngine('wasm', { quiet: true });
    const model = await loadBaseModel(base);
    const lora = LoraRuntime.fromAdapter(model, await readPeftAdapter(join(out, 'rotrev')));
    const examples = await new DataLoader(base, 256).load(join(dir, 'eval.jsonl'));
    const local = scoreDataset(model, examples, await loadTokenizer(base, 256), { lora, stop: ['\n'] }, 'eval');
    lora.dispose();
    model.dispose();
    assert.equal(g.exactMatch, local.exactMatch);
    assert.ok(
      Math.abs(g.editSimilarity - local.editSimilarity) < 1e-12,
      `${g.editSimilarity} vs ${local.editSimilarity}`,
    );
    // The answers are not all empty or all perfect: the comparison can tell scorers apart.
    assert.ok(local.editSimilarity > 0 && local.editSimilarity < 1, `edit similarity ${local.editSimilarity}`);

    const events = [];
    for await (const ev of c.watch(jobId)) events.push(ev);
    const layers = events.find((e) => e.type === 'coto.layers');
    assert.deepEqual(layers?.type === 'coto.layers' && layers.data.generation, g);
  } finally {
    c.close();
  }
});
