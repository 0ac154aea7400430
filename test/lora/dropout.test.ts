// LoRA dropout: only in training, seeded, on the LoRA input only, with the 1/(1−p) scale.
// (Split from runtime.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { LlamaModel } from '../../shared/model/llama.ts';
import { LoraRuntime } from '../../shared/lora/runtime.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';
import { lcg } from '../model/reference.ts';
import { TWO_LAYER_GQA, makeFixture, randomAdapter, randomIds } from '../model/fixture.ts';

await initEngine('wasm', { quiet: true });

test('LoRA dropout: only in training, seeded, and it changes the output', () => {
  const fx = makeFixture(TWO_LAYER_GQA, 2);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const adapter = randomAdapter(fx.config, ['q_proj', 'v_proj'], 2, 4, 1);
  adapter.config.loraDropout = 0.5;
  const rt = LoraRuntime.fromAdapter(model, adapter);
  const ids = tf.tensor2d(randomIds(fx.config.vocabSize, 2, 6, 4), [2, 6], 'int32');
  const run = (o: object) => tf.tidy(() => model.forward(ids, { lora: rt, ...o }).dataSync());
  const evalA = run({});
  const trainA = run({ training: true, dropoutSeed: 10 });
  const trainB = run({ training: true, dropoutSeed: 10 });
  const trainC = run({ training: true, dropoutSeed: 11 });
  assert.deepEqual(trainA, trainB);
  assert.notDeepEqual(trainA, evalA);
  assert.notDeepEqual(trainA, trainC);
  assert.deepEqual(run({ training: false, dropoutSeed: 10 }), evalA);
  ids.dispose();
  rt.dispose();
  model.dispose();
});

test('LoRA dropout acts on the LoRA input only (x → dropout → A → B), kept entries scaled by 1/(1−p)', () => {
  const fx = makeFixture(TWO_LAYER_GQA, 2);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const H = fx.config.hiddenSize;
  const p = 0.25;
  const N = 32;
  const ctx = { training: true, dropoutSeed: 42 };
  const rand = lcg(17);
  const xData = Float32Array.from({ length: N * H }, () => 0.5 + rand()); // no zeros: a 0 output means dropped
  const x = tf.tensor2d(xData, [N, H]);
  const adapterOf = (a: Float32Array, b: Float32Array, rank: number, scaling: number): LoraAdapter => ({
    config: { r: rank, loraAlpha: rank * scaling, targetModules: ['q_proj'], loraDropout: p, useRslora: false },
    modules: new Map([
      ['model.layers.0.self_attn.q_proj', { a, b, rank, inFeatures: H, outFeatures: H, scaling }],
      ['model.layers.1.self_attn.q_proj', { a, b, rank, inFeatures: H, outFeatures: H, scaling }],
    ]),
  });
  const deltaOf = (rt: LoraRuntime, c: { training: boolean; dropoutSeed?: number }) =>
    tf.tidy(() => rt.delta(0, 'q_proj', x, c)!.dataSync() as Float32Array);

  // 1. A = B = I: the delta is s·dropout(x), so each entry is 0 or s·x/(1−p); that reads the mask.
  const eye = Float32Array.from({ length: H * H }, (_, i) => (i % (H + 1) === 0 ? 1 : 0));
  const s = 1.5;
  const ident = LoraRuntime.fromAdapter(model, adapterOf(eye, eye, H, s));
  const d = deltaOf(ident, ctx);
  const kept = Array.from(d, (v, i) => {
    const full = (s * xData[i]) / (1 - p);
    if (Math.abs(v - full) <= 1e-6 * full) return true;
    assert.equal(v, 0, `entry ${i}: ${v} is neither 0 nor s·x/(1−p) = ${full}`);
    return false;
  });
  const keptCount = kept.filter(Boolean).length;
  const sd = Math.sqrt(N * H * p * (1 - p));
  assert.ok(
    Math.abs(keptCount - N * H * (1 - p)) < 5 * sd,
    `${keptCount} of ${N * H} kept, expected ~${N * H * (1 - p)}`,
  );
  // Not in evaluation: exactly s·x.
  assert.deepEqual(
    deltaOf(ident, { training: false, dropoutSeed: 42 }),
    Float32Array.from(xData, (v) => Math.fround(s * v)),
  );

  // 2. Random A [3, H], B [H, 3]: the delta is s·B·A·(m⊙x)/(1−p) with that mask (float64 here),
  // which tells dropout on the input apart from dropout on the output.
  const a = Float32Array.from({ length: 3 * H }, () => rand() - 0.5);
  const b = Float32Array.from({ length: H * 3 }, () => rand() - 0.5);
  const general = LoraRuntime.fromAdapter(model, adapterOf(a, b, 3, 2));
  const got = deltaOf(general, ctx);
  let maxDiff = 0;
  let maxRef = 0;
  for (let n = 0; n < N; n++) {
    const ax = [0, 1, 2].map((r) => {
      let acc = 0;
      for (let i = 0; i < H; i++) acc += a[r * H + i] * (kept[n * H + i] ? xData[n * H + i] / (1 - p) : 0);
      return acc;
    });
    for (let o = 0; o < H; o++) {
      const want = 2 * (b[o * 3] * ax[0] + b[o * 3 + 1] * ax[1] + b[o * 3 + 2] * ax[2]);
      maxDiff = Math.max(maxDiff, Math.abs(got[n * H + o] - want));
      maxRef = Math.max(maxRef, Math.abs(want));
    }
  }
  assert.ok(maxDiff <= 1e-5 * Math.max(1, maxRef), `delta vs s·B·A·dropout(x): max diff ${maxDiff}`);

  // 3. The base path is untouched: with B = 0 the training forward equals the evaluation forward.
  const zeroB = LoraRuntime.fromAdapter(model, adapterOf(a, new Float32Array(H * 3), 3, 2));
  const ids = tf.tensor2d(randomIds(fx.config.vocabSize, 2, 6, 4), [2, 6], 'int32');
  const run = (o: object) => tf.tidy(() => model.forward(ids, { lora: zeroB, ...o }).dataSync());
  assert.deepEqual(run({ training: true, dropoutSeed: 42 }), run({}));
  [ident, general, zeroB].forEach((r) => r.dispose());
  tf.dispose([x, ids]);
  model.dispose();
});
