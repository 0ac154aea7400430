// A step whose loss or gradient is not finite stops training before the update (issue 9, item 5):
// the adapter and optimiser are left as they were, the error names the step (and the module), and a
// local run writes no checkpoint for it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdapterTrainer } from '../../shared/train/trainer.ts';
import { LlamaModel, initRandomWeights } from '../../shared/model/llama.ts';
import { ChorusError } from '../../shared/errors.ts';
import { randomExamples, task, tinyModel } from './helpers.ts';

const base = await tinyModel({ layers: 2 });
const V = base.config.vocabSize;
const examples = randomExamples(16, 8, V, 5);

function trainerOn(model: LlamaModel): AdapterTrainer {
  return AdapterTrainer.create({
    model,
    task: task({ coto: null, training: { batchSize: 4, seqLen: 8 } }),
    examples,
  });
}

test('a non-finite loss stops the step before the update, naming the step', () => {
  const weights = initRandomWeights(base.config, 7);
  const norm = weights.get('model.norm.weight')!;
  (norm.data as Float32Array)[3] = Infinity;
  const t = trainerOn(LlamaModel.fromTensors(base.config, weights));
  const before = t.getAdapter();
  assert.throws(
    () => t.trainStep(),
    (e: unknown) => e instanceof ChorusError && /^step 0: the training loss is NaN \(not finite\)/.test(e.message),
  );
  assert.equal(t.step, 0);
  for (const [path, m] of t.getAdapter().modules) assert.deepEqual(m, before.modules.get(path));
  t.dispose();
});

test('a non-finite gradient (from any replica) names the module and factor and changes nothing', () => {
  const t = trainerOn(base);
  const g = t.computeGradients(0);
  const before = t.getAdapter();
  const slot = t.layout.slots[1];
  const sums = Float32Array.from(g.gradSums);
  sums[slot.offset + slot.aLength + 2] = -Infinity;
  assert.throws(
    () => t.applyGradients(sums, g.tokens, 0),
    (e: unknown) =>
      e instanceof ChorusError &&
      e.message.startsWith(`step 0: the gradient of ${slot.path}.lora_B holds -Infinity at element 2;`),
  );
  assert.equal(t.step, 0);
  for (const [path, m] of t.getAdapter().modules) assert.deepEqual(m, before.modules.get(path));
  // The finite gradient still applies.
  t.applyGradients(g.gradSums, g.tokens, 0);
  assert.equal(t.step, 1);
  t.dispose();
});
