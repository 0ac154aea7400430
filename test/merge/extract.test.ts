import { test } from 'node:test';
import assert from 'node:assert/strict';
import { extractAdapter, extractAdapterFrom, type NamedTensor } from '../../shared/merge/index.ts';
import { deltaOf, flat, maxAbs, maxAbsDiff, rng } from './helpers.ts';

/** Orthonormal columns by Gram–Schmidt on random vectors (test-side construction). */
function orthonormal(len: number, count: number, seed: number): number[][] {
  const g = rng(seed);
  const out: number[][] = [];
  while (out.length < count) {
    const v = Array.from({ length: len }, () => g.normal());
    for (const q of out) {
      const d = v.reduce((s, x, i) => s + x * q[i], 0);
      for (let i = 0; i < len; i++) v[i] -= d * q[i];
    }
    const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    out.push(v.map((x) => x / n));
  }
  return out;
}

function planted(m: number, n: number, sig: number[], seed: number): number[] {
  const u = orthonormal(m, sig.length, seed);
  const v = orthonormal(n, sig.length, seed + 1);
  const d = new Array<number>(m * n).fill(0);
  sig.forEach((s, j) => {
    for (let i = 0; i < m; i++) for (let c = 0; c < n; c++) d[i * n + c] += s * u[j][i] * v[j][c];
  });
  return d;
}

function model(shapes: Record<string, number[]>, seed: number): Map<string, NamedTensor> {
  const g = rng(seed);
  const map = new Map<string, NamedTensor>();
  for (const [name, shape] of Object.entries(shapes)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = g.normal() * 0.05;
    map.set(name, { shape, data });
  }
  return map;
}

const shapes = {
  'model.embed_tokens.weight': [50, 16],
  'model.layers.0.self_attn.q_proj.weight': [16, 16],
  'model.layers.0.self_attn.v_proj.weight': [8, 16],
  'model.layers.0.mlp.up_proj.weight': [24, 16],
  'model.layers.0.input_layernorm.weight': [16],
  'lm_head.weight': [50, 16],
};

function tunedWith(base: Map<string, NamedTensor>, deltas: Record<string, number[]>): Map<string, NamedTensor> {
  const out = new Map<string, NamedTensor>();
  for (const [name, t] of base) {
    const d = deltas[name];
    out.set(name, { shape: t.shape, data: d ? Float32Array.from(t.data, (x, i) => x + d[i]) : t.data.slice() });
  }
  return out;
}

test('extraction recovers a planted low-rank delta and reports the energy kept', async () => {
  const base = model(shapes, 1);
  const q = planted(16, 16, [3, 2, 1], 10);
  const v = planted(8, 16, [1.5, 0.5, 0.25], 20);
  const tuned = tunedWith(base, {
    'model.layers.0.self_attn.q_proj.weight': q,
    'model.layers.0.self_attn.v_proj.weight': v,
  });
  const res = await extractAdapter(base, tuned, { rank: 3, targets: ['q_proj', 'v_proj'] });
  assert.deepEqual(
    [...res.adapter.modules.keys()],
    ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj'],
  );
  assert.ok(maxAbsDiff(flat(deltaOf(res.adapter.modules.get('model.layers.0.self_attn.q_proj')!)), q) < 1e-5);
  assert.ok(maxAbsDiff(flat(deltaOf(res.adapter.modules.get('model.layers.0.self_attn.v_proj')!)), v) < 1e-5);
  for (const r of res.modules) assert.ok(Math.abs(r.energyKept - 1) < 1e-6);
  assert.deepEqual(res.adapter.config.targetModules, ['q_proj', 'v_proj']);
  assert.equal(res.adapter.config.loraAlpha, 3);

  // The streaming form (one module loaded at a time) gives the same adapter.
  const loads: string[] = [];
  const source = (m: Map<string, NamedTensor>) => ({
    shapes: m,
    load: async (name: string) => {
      loads.push(name);
      return m.get(name)!.data;
    },
  });
  const streamed = await extractAdapterFrom(source(base), source(tuned), { rank: 3, targets: ['q_proj', 'v_proj'] });
  assert.equal(loads.length, 4);
  for (const [name, mod] of res.adapter.modules) assert.deepEqual(streamed.adapter.modules.get(name)!.a, mod.a);

  // Rank 1 keeps σ₁² / Σσ².
  const one = await extractAdapter(base, tuned, { rank: 1, targets: ['q_proj'] });
  assert.ok(Math.abs(one.modules[0].energyKept - 9 / 14) < 1e-5);
});

test('energy mode picks the smallest rank reaching the fraction; ranks per module go to rank_pattern', async () => {
  const base = model(shapes, 2);
  // q: σ² = 25, 9, 1 (total 35): 0.9 needs rank 2. up: σ² = 16, 0.01: 0.9 needs rank 1.
  const q = planted(16, 16, [5, 3, 1], 30);
  const up = planted(24, 16, [4, 0.1], 40);
  const tuned = tunedWith(base, {
    'model.layers.0.self_attn.q_proj.weight': q,
    'model.layers.0.mlp.up_proj.weight': up,
  });
  const res = await extractAdapter(base, tuned, { energy: 0.9 });
  const by = Object.fromEntries(res.modules.map((r) => [r.name, r]));
  assert.equal(by['model.layers.0.self_attn.q_proj'].rank, 2);
  assert.ok(Math.abs(by['model.layers.0.self_attn.q_proj'].energyKept - 34 / 35) < 1e-5);
  assert.equal(by['model.layers.0.mlp.up_proj'].rank, 1);
  // v_proj did not change: skipped; embeddings, lm_head and 1-D norms are not candidates by default.
  assert.equal(by['model.layers.0.self_attn.v_proj'].skipped, true);
  assert.equal(by['model.embed_tokens'], undefined);
  assert.equal(by['lm_head'], undefined);
  assert.equal(res.adapter.modules.size, 2);
  const cfg = res.adapter.config;
  assert.equal(cfg.r, 2);
  assert.deepEqual(cfg.rankPattern, { 'model.layers.0.mlp.up_proj': 1 });
});

test('randomized path (large-matrix code forced on a small one) recovers the planted delta', async () => {
  const big = { 'model.layers.0.mlp.down_proj.weight': [90, 120] };
  const base = model(big, 3);
  const d = planted(90, 120, [2, 1.5, 1, 0.5], 50);
  const tuned = tunedWith(base, { 'model.layers.0.mlp.down_proj.weight': d });
  const svd = { exactBelow: 0, oversample: 6, powerIters: 1 };
  const fixed = await extractAdapter(base, tuned, { rank: 4, svd });
  assert.ok(maxAbsDiff(flat(deltaOf(fixed.adapter.modules.values().next().value!)), d) < 1e-5 * maxAbs(d) + 1e-6);
  const byEnergy = await extractAdapter(base, tuned, { energy: 0.95, svd });
  // σ² = 4, 2.25, 1, 0.25 (total 7.5): 0.95 → 7.125 needs 3 triples (7.25).
  assert.equal(byEnergy.modules[0].rank, 3);
});

test('extract errors name the tensor, the shapes, or the target', async () => {
  const base = model(shapes, 4);
  const tuned = tunedWith(base, {});
  await assert.rejects(
    async () => await extractAdapter(base, tuned, { rank: 2, energy: 0.9 }),
    /exactly one of rank or energy/,
  );
  await assert.rejects(async () => await extractAdapter(base, tuned, { energy: 1.5 }), /energy must be in \(0, 1\]/);
  await assert.rejects(
    async () => await extractAdapter(base, tuned, { rank: 2, targets: ['k_proj'] }),
    /matches? no 2-D weight|matches target k_proj/,
  );
  const wrong = new Map(tuned);
  wrong.set('model.layers.0.self_attn.q_proj.weight', { shape: [16, 8], data: new Float32Array(128) });
  await assert.rejects(
    async () => await extractAdapter(base, wrong, { rank: 2 }),
    /tensor model\.layers\.0\.self_attn\.q_proj\.weight has shape \[16, 16\] in the base model but \[16, 8\] in the tuned model/,
  );
  const missing = new Map(tuned);
  missing.delete('model.layers.0.mlp.up_proj.weight');
  await assert.rejects(
    async () => await extractAdapter(base, missing, { rank: 2 }),
    /model\.layers\.0\.mlp\.up_proj\.weight is in the base model but not in the tuned model/,
  );
  await assert.rejects(
    async () => await extractAdapter(base, tuned, { rank: 2 }),
    /equals the base model in every selected module/,
  );
  // Noise has a flat spectrum: on the large-matrix path, 99% energy would need most of the rank.
  const wide = { 'model.layers.0.mlp.up_proj.weight': [60, 50] };
  const wideBase = model(wide, 5);
  const g = rng(77);
  const noisy = tunedWith(wideBase, {
    'model.layers.0.mlp.up_proj.weight': Array.from({ length: 3000 }, () => g.normal() * 0.3),
  });
  await assert.rejects(
    async () => await extractAdapter(wideBase, noisy, { energy: 0.99, svd: { exactBelow: 0 } }),
    /module model\.layers\.0\.mlp\.up_proj \[60×50\] needs rank > 16 to keep 0\.99 of its energy/,
  );
});
