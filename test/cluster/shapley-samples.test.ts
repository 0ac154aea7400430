// coto.shapley_samples on a real cluster: the per-layer Shapley estimate costs up to `layers`
// evaluation passes per sampled permutation, so a job can set the count per task, or turn the
// estimate off with 0. On an 8-layer model (past the exact limit of 6 layers): 0 evaluates no
// coalition and the report says why; 1 sample evaluates its 9 prefixes; the default (8) still estimates.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeLlamaConfig, llamaConfigToJson } from '../../shared/model/config.ts';
import { initRandomWeights } from '../../shared/model/llama.ts';
import { writeHfModelDir } from '../../shared/formats/hf-model.ts';
import type { ChorusEvent } from '../../shared/client/index.ts';
import * as h from './helpers.ts';

const LAYERS = 8;
const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
let worker: h.Proc;

before(async () => {
  const config = makeLlamaConfig({
    hiddenSize: 16,
    numHiddenLayers: LAYERS,
    numAttentionHeads: 2,
    numKeyValueHeads: 1,
    vocabSize: 32,
    intermediateSize: 32,
  });
  await writeHfModelDir(join(dir, 'model'), llamaConfigToJson(config), initRandomWeights(config, 7));
  h.writeTaskData(join(dir, 'a.jsonl'), 16, 8, 1);
  coord = await h.startCoordinator(prefix);
  worker = h.startWorker(coord.address, 's1', 'cpu:3'); // the 3 shards are admitted together
});

after(async () => {
  await h.stopAll([worker, coord]);
  await h.cleanNats(prefix);
});

test('coto.shapley_samples: 0 evaluates no coalition and says so; 1 and the default estimate', async () => {
  const c = h.client(coord.address);
  const data = { train: join(dir, 'a.jsonl') };
  const spec = h.jobSpec(dir, {
    training: { ...h.smallTraining(4, 0), log_every: 1 },
    tasks: [
      { name: 'off', data, coto: { shapley_samples: 0 } },
      { name: 'one', data, coto: { shapley_samples: 1 } },
      { name: 'default', data },
    ],
    merge: 'none',
  });
  try {
    await h.waitWorkers(c, 1);
    const id = await c.submit(spec);
    const job = await h.withDeadline(c.wait(id), 120_000, 'the job to finish', [coord, worker]);
    assert.equal(job.state, 'succeeded', `${job.state}: ${job.reason}\n${coord.output()}`);
    const out = join(dir, 'out');
    await c.downloadResult(id, out);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    const task = (name: string) => report.tasks.find((t: { name: string }) => t.name === name);

    // The worker logs each part of a task's coalitions (spread over its free devices); summed here.
    const evaluated = (name: string) => {
      const re = new RegExp(`evaluating (\\d+) layer coalition\\(s\\) of ${name} `, 'g');
      return [...worker.output().matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);
    };
    assert.equal(evaluated('off'), 0, 'no coalition of "off" is evaluated');
    assert.equal(evaluated('one'), LAYERS + 1, "one permutation's prefixes");
    const byDefault = evaluated('default');
    assert.ok(byDefault > LAYERS + 1, `the default samples several permutations (${byDefault} coalitions)`);

    const off = task('off');
    assert.equal(off.shapleyNote, 'not estimated: coto.shapley_samples is 0');
    assert.equal(off.coalitionLoss, undefined);
    // The per-layer figures still report, without Shapley values.
    assert.equal(off.layers.length, LAYERS);
    assert.equal(
      off.layers.reduce((n: number, l: { activations: number }) => n + l.activations, 0) > 0,
      true,
      'activation counts are reported',
    );
    assert.ok(off.layers.every((l: { shapley: number | null }) => l.shapley === null));
    for (const name of ['one', 'default']) {
      const t = task(name);
      assert.equal(t.shapleyNote, undefined, `${name}: ${t.shapleyNote}`);
      assert.ok(t.layers.every((l: { shapley: number | null }) => Number.isFinite(l.shapley)));
      // Σφ = the gain from no adapters to all of them, whatever the sample count.
      const sum = t.layers.reduce((s: number, l: { shapley: number }) => s + l.shapley, 0);
      const gain = t.coalitionLoss.noAdapters - t.coalitionLoss.allAdapters;
      assert.ok(Math.abs(sum - gain) <= 1e-5 + 1e-4 * Math.abs(gain), `${name}: Σφ ${sum} vs gain ${gain}`);
    }

    const events: ChorusEvent[] = [];
    for await (const ev of c.watch(id)) events.push(ev);
    const layers = events.flatMap((e) => (e.type === 'coto.layers' ? [e.data] : []));
    assert.equal(layers.find((d) => d.task === 'off')?.shapley, null);
    assert.equal(layers.find((d) => d.task === 'one')?.shapley?.length, LAYERS);
  } finally {
    c.close();
  }
});
