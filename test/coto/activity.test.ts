// Per-layer CoTo figures: the one type the trainer checkpoints and the coordinator aggregates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LayerActivity } from '../../shared/coto/activity.ts';

test('LayerActivity: counts, merging and a JSON round trip with validation', () => {
  const c = new LayerActivity(3);
  c.record([true, false, true]);
  c.record([false, false, true]);
  assert.deepEqual(
    { numLayers: c.numLayers, steps: c.steps, counts: c.counts },
    { numLayers: 3, steps: 2, counts: [1, 0, 2] },
  );
  const d = LayerActivity.fromJSON(JSON.parse(JSON.stringify(c)));
  d.add(c);
  assert.deepEqual(d.counts, [2, 0, 4]);
  assert.equal(d.steps, 4);
  assert.deepEqual(d.rates(), [0.5, 0, 1]);
  assert.throws(() => c.record([true]), /mask has 1 layers, expected 3/);
  assert.throws(
    () => LayerActivity.fromJSON({ numLayers: 2, steps: 1, counts: [1, 2] }, 'ckpt/coto.json'),
    /ckpt\/coto\.json: a layer count exceeds steps/,
  );
  assert.throws(
    () => LayerActivity.fromJSON({ numLayers: 2, steps: 1, counts: [1] }),
    /counts must be 2 non-negative integers/,
  );
  // Checkpoints written before the loss figures existed still load.
  assert.deepEqual(LayerActivity.fromJSON({ numLayers: 2, steps: 3, counts: [3, 1] }).meanLossActive(), [null, null]);
});

test('LayerActivity: mean loss with each layer on and off, over the steps that had a loss', () => {
  const a = new LayerActivity(2);
  a.record([true, false], 2);
  a.record([true, true], 4);
  a.record([false, true], 9);
  a.record([true, false], Number.NaN); // counted as a step, not in the loss means
  assert.deepEqual(a.counts, [3, 2]);
  assert.deepEqual(a.meanLossActive(), [3, 6.5]);
  assert.deepEqual(a.meanLossInactive(), [9, 2]);
  const back = LayerActivity.fromJSON(JSON.parse(JSON.stringify(a)));
  assert.deepEqual(back.meanLossActive(), [3, 6.5]);
  assert.deepEqual(back.meanLossInactive(), [9, 2]);
  assert.throws(
    () => LayerActivity.fromJSON({ ...a.toJSON(), lossActiveN: [1, -1] }),
    /lossActiveN must be 2 non-negative integers/,
  );
});
