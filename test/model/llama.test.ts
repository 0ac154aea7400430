// The tfjs Llama forward against the independent float64 reference (test/model/reference.ts).
// Tolerance: the engine runs in float32 (unit roundoff 6e-8); with dot products of ≤ 64 terms,
// 2–3 layers, softmax and norms, accumulated relative error stays around 1e-6…1e-5 of the logit
// scale. We allow 1e-4 × max|logit| — two orders above that, and far below any real semantic
// mistake (a wrong RoPE pairing, GQA mapping or missing norm weight moves logits by O(1)).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { LlamaModel, initRandomWeights } from '../../shared/model/llama.ts';
import { LoraRuntime } from '../../shared/lora/runtime.ts';
import { ChorusError } from '../../shared/errors.ts';
import { refForward } from './reference.ts';
import { makeFixture, randomAdapter, randomIds, refLoraOf, type Fixture } from './fixture.ts';

await initEngine('wasm', { quiet: true });

function engineLogits(
  model: LlamaModel,
  ids: number[][],
  opts: Parameters<LlamaModel['forward']>[1] = {},
): Float32Array {
  return tf.tidy(
    () => model.forward(tf.tensor2d(ids, [ids.length, ids[0].length], 'int32'), opts).dataSync() as Float32Array,
  );
}

function assertClose(fx: Fixture, got: Float32Array, ids: number[][], refOf: (ids: number[]) => Float64Array[]) {
  const V = fx.config.vocabSize;
  const T = ids[0].length;
  let maxDiff = 0;
  let scale = 0;
  ids.forEach((row, b) => {
    const ref = refOf(row);
    for (let t = 0; t < T; t++) {
      for (let v = 0; v < V; v++) {
        const r = ref[t][v];
        scale = Math.max(scale, Math.abs(r));
        maxDiff = Math.max(maxDiff, Math.abs(got[(b * T + t) * V + v] - r));
      }
    }
  });
  assert.ok(scale > 0.5, `logits too small to be a meaningful check (${scale})`);
  assert.ok(maxDiff <= 1e-4 * scale, `max |engine − reference| = ${maxDiff} exceeds ${1e-4 * scale}`);
  return maxDiff;
}

const configs = {
  gqaUntied: {
    hiddenSize: 32,
    numHiddenLayers: 3,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    vocabSize: 40,
    intermediateSize: 48,
    ropeTheta: 10000,
    rmsNormEps: 1e-6,
  },
  // Tied embeddings, plain MHA, head_dim ≠ hidden/heads, a large rope_theta and eps 1e-5.
  mhaTied: {
    hiddenSize: 24,
    numHiddenLayers: 2,
    numAttentionHeads: 2,
    numKeyValueHeads: 2,
    headDim: 16,
    vocabSize: 30,
    intermediateSize: 40,
    tieWordEmbeddings: true,
    ropeTheta: 500000,
    rmsNormEps: 1e-5,
  },
  // Four query heads share one KV head (group 4).
  mqa: {
    hiddenSize: 32,
    numHiddenLayers: 1,
    numAttentionHeads: 4,
    numKeyValueHeads: 1,
    vocabSize: 20,
    intermediateSize: 24,
  },
};

for (const [name, p] of Object.entries(configs)) {
  test(`base forward equals the float64 reference (${name})`, () => {
    const fx = makeFixture(p, 11);
    const model = LlamaModel.fromTensors(fx.config, fx.tensors);
    const ids = randomIds(fx.config.vocabSize, 2, 7, 5);
    assertClose(fx, engineLogits(model, ids), ids, (row) => refForward(fx.ref, fx.refWeights, row));
    model.dispose();
  });
}

test('llama3 and linear rope_scaling: forward equals the reference, and the scaling matters', () => {
  // head_dim 8, theta 1e4 → wavelengths 6.3, 63, 628, 6283; with original context 64 and
  // low/high factors 1/4 the bounds are 64 and 16, so the four frequencies fall in all three
  // llama3 bands (kept, interpolated, divided by the factor).
  const p = {
    hiddenSize: 32,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    vocabSize: 30,
    intermediateSize: 40,
  };
  const llama3 = {
    rope_type: 'llama3',
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 64,
  };
  const ids = randomIds(30, 2, 8, 3);
  const outputs: Float32Array[] = [];
  for (const scaling of [llama3, { type: 'linear', factor: 4 }, undefined]) {
    const fx = makeFixture(p, 13, scaling);
    const model = LlamaModel.fromTensors(fx.config, fx.tensors);
    const got = engineLogits(model, ids);
    assertClose(fx, got, ids, (row) => refForward(fx.ref, fx.refWeights, row));
    outputs.push(got);
    model.dispose();
  }
  const diff = (x: Float32Array, y: Float32Array) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
  assert.ok(
    diff(outputs[0], outputs[2]) > 1e-2 && diff(outputs[1], outputs[2]) > 1e-2,
    'rope scaling must change the logits',
  );
});

test('forward with LoRA on five modules and a partial activeLayers mask equals the reference', () => {
  const fx = makeFixture(configs.gqaUntied, 21);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const adapter = randomAdapter(fx.config, ['q_proj', 'v_proj', 'o_proj', 'gate_proj', 'down_proj'], 4, 8, 3);
  const lora = LoraRuntime.fromAdapter(model, adapter);
  const ids = randomIds(fx.config.vocabSize, 2, 6, 9);
  const active = [true, false, true];
  const refLora = refLoraOf(adapter);
  const got = engineLogits(model, ids, { lora, activeLayers: active });
  assertClose(fx, got, ids, (row) => refForward(fx.ref, fx.refWeights, row, refLora, active));
  // The adapter really changes the output, and the mask really matters.
  const all = engineLogits(model, ids, { lora });
  assertClose(fx, all, ids, (row) => refForward(fx.ref, fx.refWeights, row, refLora));
  const base = engineLogits(model, ids);
  const diff = (x: Float32Array, y: Float32Array) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
  assert.ok(diff(got, base) > 1e-2, 'LoRA should change the logits');
  assert.ok(diff(got, all) > 1e-2, 'an inactive layer should change the logits');
  lora.dispose();
  model.dispose();
});

test('a fresh LoraRuntime (B = 0) leaves the output bit-for-bit equal to the base model', () => {
  const fx = makeFixture(configs.gqaUntied, 31);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const lora = LoraRuntime.create(
    model,
    {
      r: 8,
      loraAlpha: 16,
      targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
      loraDropout: 0,
      useRslora: false,
    },
    { seed: 1 },
  );
  const ids = randomIds(fx.config.vocabSize, 2, 5, 2);
  const base = engineLogits(model, ids);
  const withLora = engineLogits(model, ids, { lora });
  assert.deepEqual(withLora, base);
  lora.dispose();
  model.dispose();
});

test('fromTensors names a missing tensor and a wrong shape', () => {
  const fx = makeFixture(configs.mqa, 1);
  const missing = new Map(fx.tensors);
  missing.delete('model.layers.0.mlp.up_proj.weight');
  assert.throws(
    () => LlamaModel.fromTensors(fx.config, missing, 'base/model.safetensors'),
    (e: unknown) =>
      e instanceof ChorusError &&
      /base\/model\.safetensors: missing tensor model\.layers\.0\.mlp\.up_proj\.weight/.test(e.message),
  );
  const wrong = new Map(fx.tensors);
  wrong.set('model.norm.weight', { shape: [31], data: new Float32Array(31) });
  assert.throws(
    () => LlamaModel.fromTensors(fx.config, wrong),
    /model\.norm\.weight has shape \[31\], expected \[32\]/,
  );
});

test('toTensorMap round-trips the weights; a tied model omits lm_head', () => {
  const fx = makeFixture(configs.mhaTied, 4);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const out = model.toTensorMap();
  assert.equal(out.has('lm_head.weight'), false);
  assert.deepEqual([...out.keys()].sort(), [...fx.tensors.keys()].sort());
  for (const [k, t] of fx.tensors) assert.deepEqual(out.get(k)!.data, t.data, k);
  model.dispose();
});

test('initRandomWeights: deterministic HF-style init (N(0, 0.02), norms 1)', () => {
  const fx = makeFixture(
    { hiddenSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 256 },
    1,
  );
  const a = initRandomWeights(fx.config, 7);
  const b = initRandomWeights(fx.config, 7);
  const c = initRandomWeights(fx.config, 8);
  assert.deepEqual([...a.keys()].sort(), [...fx.tensors.keys()].sort());
  const q = a.get('model.layers.1.self_attn.q_proj.weight')!.data;
  assert.deepEqual(q, b.get('model.layers.1.self_attn.q_proj.weight')!.data);
  assert.notDeepEqual(q, c.get('model.layers.1.self_attn.q_proj.weight')!.data);
  const all = a.get('model.embed_tokens.weight')!.data; // 16384 draws
  const mean = all.reduce((s, v) => s + v, 0) / all.length;
  const std = Math.sqrt(all.reduce((s, v) => s + (v - mean) ** 2, 0) / all.length);
  assert.ok(Math.abs(mean) < 0.001, `mean ${mean}`); // 4.5 standard errors (0.02/√16384 = 1.6e-4)
  assert.ok(Math.abs(std - 0.02) < 0.0005, `std ${std}`);
  assert.ok(a.get('model.layers.0.input_layernorm.weight')!.data.every((v) => v === 1));
  // A model built from them runs.
  const model = LlamaModel.fromTensors(fx.config, a);
  const logits = engineLogits(model, [[1, 2, 3]]);
  assert.ok(logits.every(Number.isFinite));
  model.dispose();
});
