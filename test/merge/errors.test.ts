import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeAdapters, type MergeOptions } from '../../shared/merge/index.ts';
import { ChorusError } from '../../shared/errors.ts';
import { randomAdapter, type Spec } from './helpers.ts';

const spec: Spec = {
  shapes: { 'model.layers.0.self_attn.q_proj': [8, 6], 'model.layers.0.self_attn.v_proj': [4, 6] },
  rank: 2,
  alpha: 4,
};
const a = randomAdapter(spec, 1);
const b = randomAdapter(spec, 2);
const labels = ['A/', 'B/'];

async function fails(adapters: (typeof a)[], opts: Partial<MergeOptions>, re: RegExp) {
  await assert.rejects(
    async () => await mergeAdapters(adapters, { method: 'linear', labels, ...opts } as MergeOptions),
    (err: unknown) => err instanceof ChorusError && re.test(err.message),
  );
}

test('module sets and shapes must agree; the error names the module and both shapes', async () => {
  const wrong = randomAdapter({ ...spec, shapes: { ...spec.shapes, 'model.layers.0.self_attn.v_proj': [5, 6] } }, 3);
  await fails(
    [a, wrong],
    {},
    /module model\.layers\.0\.self_attn\.v_proj has shape \[4, 6\] in A\/ but \[5, 6\] in B\//,
  );
  const fewer = randomAdapter({ ...spec, shapes: { 'model.layers.0.self_attn.q_proj': [8, 6] } }, 4);
  await fails([a, fewer], {}, /module model\.layers\.0\.self_attn\.v_proj is in A\/ but not in B\//);
  await fails([fewer, a], {}, /module model\.layers\.0\.self_attn\.v_proj is in B\/ but not in A\//);
  const broken = randomAdapter(spec, 5);
  broken.modules.get('model.layers.0.self_attn.q_proj')!.a = new Float32Array(3);
  await fails(
    [a, broken],
    {},
    /B\/: module model\.layers\.0\.self_attn\.q_proj lora_A has 3 values, expected \[2, 6\]/,
  );
});

test('options are checked and named', async () => {
  await fails([a, b], { method: 'mean' as never }, /unknown merge method "mean"/);
  await fails([a, b], { weights: [1] }, /weights: 1 weights given for 2 adapters/);
  await fails([a, b], { weights: [1, Number.NaN] }, /weights\[1\] \(B\/\) is not a finite number/);
  await fails([a, b], { method: 'ties' }, /density is required for method ties/);
  await fails([a, b], { method: 'dare_ties', density: 0 }, /density must be in \(0, 1\]/);
  await fails([a, b], { method: 'magnitude_prune', density: 1.5 }, /density must be in \(0, 1\]/);
  await fails([a, b], { density: 0.5 }, /density does not apply to method linear/);
  await fails(
    [a, b],
    { method: 'ties', density: 0.5, majoritySign: 'max' as never },
    /majority sign must be "total" or "frequency"/,
  );
  await fails([a, b], { rank: 0 }, /rank must be a positive integer or "full"/);
  await fails([a, b], { space: 'weights' as never }, /space must be "delta" or "factors"/);
  await fails([a, b], { method: 'cat', space: 'factors', rank: 2 }, /rank does not apply to cat in factors space/);
  await fails([], {}, /at least one adapter/);
});
