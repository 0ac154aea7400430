// The coordinator's side of placement by memory: a task's plan against a device as its worker reported it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkPlannable, fitCheck } from '../../coordinator/memory-fit.ts';
import { parseJobSpec } from '../../shared/job/parse.ts';
import { llamaConfigToJson, makeLlamaConfig } from '../../shared/model/config.ts';

const config = makeLlamaConfig({
  hiddenSize: 576,
  numHiddenLayers: 30,
  numAttentionHeads: 9,
  numKeyValueHeads: 3,
  intermediateSize: 1536,
  vocabSize: 49152,
  tieWordEmbeddings: true,
});
const model = { configJson: JSON.stringify(llamaConfigToJson(config)), weightBytes: 269_030_016 };
const spec = (training: object) =>
  parseJobSpec(JSON.stringify({ base_model: '/m', data: { train: '/d.jsonl' }, training: { steps: 1, ...training } }));
const cpu = (gib: number) => ({
  id: 'cpu:0',
  kind: 'cpu',
  description: '',
  memoryBytes: gib * 1024 ** 3,
  engine: 'wasm',
});

test('a device fits when the plan does; a device that reported no memory is left to its runner', () => {
  const check = fitCheck(spec({ batch_size: 4, seq_len: 128 }), model)!;
  assert.equal(check(0, cpu(12)), null);
  assert.match(
    check(0, cpu(1))!,
    /^tasks\[0\]\.training: batch_size 4 × seq_len 128 .* over cpu:0's reported memory \(1\.00 GiB/,
  );
  assert.equal(check(0, cpu(0)), null);
  // A GPU's memory bounds the engine, not the process: 0.3 GiB of GPU is too little even streamed.
  assert.match(check(0, { ...cpu(0.3), id: 'gpu:0', kind: 'gpu', engine: '' })!, /over gpu:0's GPU memory/);
  assert.equal(fitCheck(spec({}), undefined), undefined, 'no model summary: placed by count');
});

test('what no device changes is refused at submit; a malformed summary names its field', () => {
  assert.throws(() => checkPlannable(spec({ seq_len: 4096 }), model), /tasks\[0\]\.training\.seq_len: 4096 exceeds/);
  assert.throws(() => checkPlannable(spec({}), { ...model, configJson: '{' }), /model\.config_json: not valid JSON/);
  assert.throws(
    () => checkPlannable(spec({}), { ...model, configJson: ' '.repeat(70_000) }),
    /model\.config_json: 70000 characters/,
  );
  assert.throws(
    () => checkPlannable(spec({}), { ...model, weightBytes: -1 }),
    /model\.weight_bytes: must be a non-negative integer/,
  );
  assert.throws(
    () => checkPlannable(spec({}), { ...model, configJson: '{"model_type":"gpt2"}' }),
    /model\.config_json: model_type "gpt2"/,
  );
});
