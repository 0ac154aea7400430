// LoRA runtime: gradients against central finite differences of the float64 reference, PEFT
// initialisation, scaling (plain and rsLoRA, rank/alpha patterns), dropout, adapter round trips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { LlamaModel } from '../../shared/model/llama.ts';
import { nextTokenLoss, type TokenBatch } from '../../shared/model/loss.ts';
import { LoraRuntime, resolveTargetModules } from '../../shared/lora/runtime.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';
import { ChorusError } from '../../shared/errors.ts';
import { refForward, refLoss, lcg } from '../model/reference.ts';
import { TWO_LAYER_GQA, makeFixture, randomAdapter, randomIds, refLoraOf } from '../model/fixture.ts';

await initEngine('wasm', { quiet: true });

function toBatch(ids: number[][], mask: number[][]): TokenBatch {
  return {
    inputIds: Int32Array.from(ids.flat()),
    targetMask: Float32Array.from(mask.flat()),
    batchSize: ids.length,
    seqLen: ids[0].length,
  };
}

test('LoRA gradients (A and B) match central finite differences of the float64 reference', () => {
  const fx = makeFixture(TWO_LAYER_GQA, 5);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const adapter = randomAdapter(fx.config, ['q_proj', 'k_proj', 'up_proj', 'down_proj'], 3, 6, 8);
  const lora = LoraRuntime.fromAdapter(model, adapter);
  const ids = randomIds(fx.config.vocabSize, 2, 5, 3);
  const mask = [
    [0, 1, 1, 0, 1],
    [0, 0, 1, 1, 1],
  ]; // partial: prompt-like positions carry no loss
  const active = [false, true];
  const batch = toBatch(ids, mask);

  const named = lora.namedVariables();
  const { value, grads } = tf.variableGrads(
    () => nextTokenLoss(model, batch, { lora, activeLayers: active }),
    lora.variables(),
  );
  const ref = refLoraOf(adapter);
  const refValue = refLoss(fx.ref, fx.refWeights, ids, mask, ref, active);
  assert.ok(
    Math.abs(value.dataSync()[0] - refValue) < 1e-5 * Math.max(1, refValue),
    `loss ${value.dataSync()[0]} vs ${refValue}`,
  );

  // Inactive layer 0: no gradient at all (variableGrads only reports variables the loss reached).
  for (const [key, v] of named) {
    if (key.startsWith('model.layers.0.')) {
      const g = grads[v.name];
      assert.ok(!g || g.abs().max().dataSync()[0] === 0, `${key} of an inactive layer got a gradient`);
    }
  }

  const rand = lcg(77);
  const h = 1e-5;
  let checked = 0;
  for (const path of [
    'model.layers.1.self_attn.q_proj',
    'model.layers.1.self_attn.k_proj',
    'model.layers.1.mlp.up_proj',
    'model.layers.1.mlp.down_proj',
  ]) {
    for (const kind of ['a', 'b'] as const) {
      const g = grads[named.get(`${path}.lora_${kind.toUpperCase()}`)!.name].dataSync();
      const target = ref.get(path)![kind];
      for (let k = 0; k < 3; k++) {
        const i = Math.floor(rand() * target.length);
        const orig = target[i];
        target[i] = orig + h;
        const up = refLoss(fx.ref, fx.refWeights, ids, mask, ref, active);
        target[i] = orig - h;
        const down = refLoss(fx.ref, fx.refWeights, ids, mask, ref, active);
        target[i] = orig;
        const fd = (up - down) / (2 * h);
        // float32 backprop vs float64 FD: relative 1e-3 plus an absolute floor for tiny entries.
        assert.ok(
          Math.abs(g[i] - fd) <= 1e-3 * Math.abs(fd) + 1e-6,
          `${path}.lora_${kind}[${i}]: autodiff ${g[i]} vs FD ${fd}`,
        );
        checked++;
      }
    }
  }
  assert.equal(checked, 24);
  tf.dispose([value, ...Object.values(grads)]);
  lora.dispose();
  model.dispose();
});

test('PEFT init: A ~ U(−1/√in, 1/√in) (kaiming_uniform a=√5), B = 0, seeded', () => {
  const fx = makeFixture({ hiddenSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, vocabSize: 16 }, 1);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const cfg = { r: 16, loraAlpha: 32, targetModules: ['q_proj', 'down_proj'], loraDropout: 0, useRslora: false };
  const a1 = LoraRuntime.create(model, cfg, { seed: 3 });
  const a2 = LoraRuntime.create(model, cfg, { seed: 3 });
  const a3 = LoraRuntime.create(model, cfg, { seed: 4 });
  const x = a1.toAdapter();
  assert.deepEqual(
    [...x.modules.keys()],
    [
      'model.layers.0.self_attn.q_proj',
      'model.layers.0.mlp.down_proj',
      'model.layers.1.self_attn.q_proj',
      'model.layers.1.mlp.down_proj',
    ],
  );
  for (const [path, m] of x.modules) {
    const bound = 1 / Math.sqrt(m.inFeatures);
    assert.ok(
      m.a.every((v) => Math.abs(v) <= bound),
      `${path}: A outside ±${bound}`,
    );
    const variance = m.a.reduce((s, v) => s + v * v, 0) / m.a.length;
    // Var of U(−b, b) is b²/3; with ≥ 1024 draws the sample variance is within ~8% (3 s.e.).
    assert.ok(Math.abs(variance / ((bound * bound) / 3) - 1) < 0.1, `${path}: variance ${variance}`);
    assert.ok(
      m.b.every((v) => v === 0),
      `${path}: B must start at zero`,
    );
    assert.equal(m.scaling, 2);
  }
  assert.deepEqual(
    a2.toAdapter().modules.get('model.layers.1.mlp.down_proj')!.a,
    x.modules.get('model.layers.1.mlp.down_proj')!.a,
  );
  assert.notDeepEqual(
    a3.toAdapter().modules.get('model.layers.1.mlp.down_proj')!.a,
    x.modules.get('model.layers.1.mlp.down_proj')!.a,
  );
  // Different modules draw different values.
  assert.notDeepEqual(
    x.modules.get('model.layers.0.self_attn.q_proj')!.a,
    x.modules.get('model.layers.1.self_attn.q_proj')!.a,
  );
  [a1, a2, a3].forEach((r) => r.dispose());
  model.dispose();
});

test('rsLoRA scaling, rank_pattern and alpha_pattern follow PEFT; forward matches the reference', () => {
  const fx = makeFixture(TWO_LAYER_GQA, 9);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const rt = LoraRuntime.create(
    model,
    {
      r: 4,
      loraAlpha: 8,
      targetModules: ['v_proj', 'o_proj'],
      loraDropout: 0,
      useRslora: true,
      rankPattern: { 'layers.1.self_attn.o_proj': 2 },
      alphaPattern: { v_proj: 3 },
    },
    { seed: 1 },
  );
  const ad = rt.toAdapter();
  assert.equal(ad.modules.get('model.layers.0.self_attn.o_proj')!.scaling, 8 / Math.sqrt(4));
  assert.equal(ad.modules.get('model.layers.1.self_attn.o_proj')!.rank, 2);
  assert.equal(ad.modules.get('model.layers.1.self_attn.o_proj')!.scaling, 8 / Math.sqrt(2));
  assert.equal(ad.modules.get('model.layers.0.self_attn.v_proj')!.scaling, 3 / 2);
  // Give B values, then compare the forward with the reference using the same scalings.
  const rand = lcg(5);
  for (const m of ad.modules.values()) m.b.forEach((_, i) => (m.b[i] = rand() - 0.5));
  rt.load(ad);
  const ids = randomIds(fx.config.vocabSize, 1, 6, 4);
  const got = tf.tidy(() => rt && model.forward(tf.tensor2d(ids, [1, 6], 'int32'), { lora: rt }).dataSync());
  const ref = refForward(fx.ref, fx.refWeights, ids[0], refLoraOf(ad));
  const V = fx.config.vocabSize;
  let maxDiff = 0;
  ref.forEach((row, t) => row.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - got[t * V + j])))));
  assert.ok(maxDiff < 1e-4, `max diff ${maxDiff}`);
  rt.dispose();
  model.dispose();
});

test('adapter round trip: toAdapter → fromAdapter → toAdapter is exact and computes the same', () => {
  const fx = makeFixture(TWO_LAYER_GQA, 3);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const original = randomAdapter(fx.config, ['k_proj', 'gate_proj'], 3, 5, 2);
  const rt1 = LoraRuntime.fromAdapter(model, original);
  const out1 = rt1.toAdapter();
  assert.deepEqual([...out1.modules.keys()], [...original.modules.keys()]);
  for (const [k, m] of original.modules) assert.deepEqual(out1.modules.get(k), m, k);
  const rt2 = LoraRuntime.fromAdapter(model, out1);
  const ids = tf.tensor2d(randomIds(fx.config.vocabSize, 1, 5, 1), [1, 5], 'int32');
  const f = (rt: LoraRuntime) => tf.tidy(() => model.forward(ids, { lora: rt }).dataSync());
  assert.deepEqual(f(rt2), f(rt1));
  // load() replaces values in place; the copy handed out earlier is not aliased to the variables.
  const zeros: LoraAdapter = {
    config: out1.config,
    modules: new Map([...out1.modules].map(([k, m]) => [k, { ...m, b: new Float32Array(m.b.length) }])),
  };
  rt2.load(zeros);
  assert.deepEqual(
    f(rt2),
    tf.tidy(() => model.forward(ids).dataSync()),
  );
  assert.notDeepEqual(
    out1.modules.get('model.layers.0.mlp.gate_proj')!.b,
    new Float32Array(out1.modules.get('model.layers.0.mlp.gate_proj')!.b.length),
  );
  ids.dispose();
  rt1.dispose();
  rt2.dispose();
  model.dispose();
});

test('variablesOfLayer, layers() and namedVariables partition the variables', () => {
  const fx = makeFixture(TWO_LAYER_GQA, 3);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const rt = LoraRuntime.create(
    model,
    { r: 2, loraAlpha: 2, targetModules: ['q_proj', 'up_proj'], loraDropout: 0, useRslora: false },
    { seed: 0 },
  );
  assert.deepEqual(rt.layers(), [0, 1]);
  assert.equal(rt.variables().length, 8);
  assert.equal(rt.variablesOfLayer(1).length, 4);
  const names = new Set(rt.variablesOfLayer(0).map((v) => v.name));
  assert.ok(rt.variablesOfLayer(1).every((v) => !names.has(v.name)));
  assert.deepEqual([...rt.namedVariables().keys()].slice(0, 2), [
    'model.layers.0.self_attn.q_proj.lora_A',
    'model.layers.0.self_attn.q_proj.lora_B',
  ]);
  rt.dispose();
  model.dispose();
});

test('bad adapters and configs are ChorusErrors that name the problem', () => {
  assert.throws(
    () => resolveTargetModules(['q_proj', 'qkv']),
    (e: unknown) => e instanceof ChorusError && /unknown module 'qkv'/.test(e.message),
  );
  assert.deepEqual(resolveTargetModules(['all-linear']).length, 7);
  const fx = makeFixture(TWO_LAYER_GQA, 3);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  assert.throws(
    () =>
      LoraRuntime.create(
        model,
        { r: 0, loraAlpha: 1, targetModules: ['q_proj'], loraDropout: 0, useRslora: false },
        { seed: 0 },
      ),
    /"r" must be a positive integer/,
  );
  const ad = randomAdapter(fx.config, ['q_proj'], 2, 2, 0);
  const m = ad.modules.get('model.layers.0.self_attn.q_proj')!;
  const bad1: LoraAdapter = { config: ad.config, modules: new Map([['model.layers.5.self_attn.q_proj', m]]) };
  assert.throws(
    () => LoraRuntime.fromAdapter(model, bad1, 'runs/a'),
    /runs\/a: model\.layers\.5\.self_attn\.q_proj names layer 5, the model has 2 layers/,
  );
  const bad2: LoraAdapter = {
    config: ad.config,
    modules: new Map([['model.layers.0.self_attn.q_proj', { ...m, inFeatures: 8 }]]),
  };
  assert.throws(() => LoraRuntime.fromAdapter(model, bad2), /is 16×8, the model's module is 16×16/);
  const bad3: LoraAdapter = { config: ad.config, modules: new Map([['model.layers.0.attn.q_proj', m]]) };
  assert.throws(() => LoraRuntime.fromAdapter(model, bad3), /not a Llama linear module/);
  const rt = LoraRuntime.fromAdapter(model, ad);
  const wrongRank: LoraAdapter = {
    config: ad.config,
    modules: new Map(
      [...ad.modules].map(([k, v]) => [k, { ...v, rank: 1, a: v.a.subarray(0, 16), b: v.b.subarray(0, 16) }]),
    ),
  };
  assert.throws(() => rt.load(wrongRank), /has rank 1 .* expected rank 2/);
  rt.dispose();
  model.dispose();
});

test('memory stays flat: repeated gradient steps and evaluations leak no tensors', async () => {
  const { evaluate } = await import('../../shared/model/loss.ts');
  const fx = makeFixture(TWO_LAYER_GQA, 4);
  const model = LlamaModel.fromTensors(fx.config, fx.tensors);
  const rt = LoraRuntime.create(
    model,
    { r: 2, loraAlpha: 4, targetModules: ['q_proj', 'v_proj', 'down_proj'], loraDropout: 0.1, useRslora: false },
    { seed: 0 },
  );
  const batch = toBatch(randomIds(fx.config.vocabSize, 2, 6, 1), [
    [0, 1, 1, 1, 1, 1],
    [0, 1, 1, 1, 1, 1],
  ]);
  const step = (i: number) => {
    const { value, grads } = tf.variableGrads(
      () =>
        nextTokenLoss(model, batch, { lora: rt, training: true, dropoutSeed: i, activeLayers: [i % 2 === 0, true] }),
      rt.variables(),
    );
    tf.dispose([value, ...Object.values(grads)]);
    evaluate(model, batch, { lora: rt, rowsPerChunk: 1 });
  };
  step(0); // first call builds the cached RoPE tables
  const before = tf.memory().numTensors;
  for (let i = 1; i <= 20; i++) step(i);
  assert.equal(tf.memory().numTensors, before);
  rt.dispose();
  model.dispose();
});
