// Every merge method against a float64 reference written here with plain loops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeAdapters, type MergeMethod, type MergeResult } from '../../shared/merge/index.ts';
import {
  deltaOf,
  flat,
  frob2,
  maxAbs,
  maxAbsDiff,
  randomAdapter,
  refLinear,
  refSingularValues,
  refTies,
  refTrim,
  type Spec,
} from './helpers.ts';

const spec: Spec = {
  shapes: { 'model.layers.0.self_attn.q_proj': [12, 10], 'model.layers.0.self_attn.v_proj': [6, 10] },
  rank: 3,
  alpha: 6,
};
const adapters = [
  randomAdapter(spec, 1),
  randomAdapter({ ...spec, alpha: 3 }, 2),
  randomAdapter({ ...spec, rslora: true }, 3),
];
const weights = [1, 0.5, -0.7];

function refDeltas(name: string): number[][] {
  return adapters.map((a) => flat(deltaOf(a.modules.get(name)!)));
}

function mergedDelta(result: MergeResult, name: string): number[] {
  const m = result.adapter.modules.get(name)!;
  return flat(deltaOf(m));
}

async function check(method: MergeMethod, ref: (name: string) => number[], extra: Record<string, unknown> = {}) {
  const res = await mergeAdapters(adapters, { method, weights, rank: 'full', ...extra });
  for (const name of Object.keys(spec.shapes)) {
    const want = ref(name);
    const got = mergedDelta(res, name);
    assert.ok(maxAbsDiff(got, want) < 1e-5 * (1 + maxAbs(want)), `${method} ${name}: ${maxAbsDiff(got, want)}`);
  }
  return res;
}

test('linear and task_arithmetic = Σ w_k s_k B_k A_k (rsLoRA and differing alphas included)', async () => {
  for (const method of ['linear', 'task_arithmetic'] as const) {
    await check(method, (name) => refLinear(refDeltas(name), weights));
    // Default rank is Σ r_k: still exact.
    const res = await mergeAdapters(adapters, { method, weights });
    for (const name of Object.keys(spec.shapes)) {
      assert.ok(maxAbsDiff(mergedDelta(res, name), refLinear(refDeltas(name), weights)) < 1e-5);
    }
  }
});

test('cat is exact: stacked rank Σ r_k, output scaling 1, lora_alpha = r', async () => {
  const res = await mergeAdapters(adapters, { method: 'cat', weights });
  for (const name of Object.keys(spec.shapes)) {
    const mod = res.adapter.modules.get(name)!;
    assert.equal(mod.rank, 9);
    assert.equal(mod.scaling, 1);
    assert.ok(maxAbsDiff(mergedDelta(res, name), refLinear(refDeltas(name), weights)) < 1e-5);
  }
  assert.equal(res.adapter.config.r, 9);
  assert.equal(res.adapter.config.loraAlpha, 9);
  assert.equal(res.adapter.config.useRslora, false);
});

test('svd = best rank-r approximation of Σ w_k ΔW_k (Eckart–Young against a Gram-eigenvalue reference)', async () => {
  // The energy report is exact to float64 rounding on the reference path; the float32 path computes
  // its σ from float32 Gram matrices, good to ~1e-7.
  for (const [precision, energyTol] of [
    ['float64', 1e-9],
    ['float32', 1e-6],
  ] as const) {
    for (const r of [1, 2, 3]) {
      const res = await mergeAdapters(adapters, { method: 'svd', weights, rank: r, precision });
      for (const name of Object.keys(spec.shapes)) {
        const [out, inp] = spec.shapes[name];
        const full = refLinear(refDeltas(name), weights);
        const got = mergedDelta(res, name);
        const resid = frob2(got.map((x, i) => x - full[i]));
        const rowsOf = Array.from({ length: out }, (_, i) => full.slice(i * inp, (i + 1) * inp));
        const sig = refSingularValues(rowsOf);
        const dropped = sig.slice(r).reduce((s, x) => s + x * x, 0);
        assert.ok(Math.abs(resid - dropped) < 1e-5 * (1 + frob2(full)), `r=${r} ${name}: ${resid} vs ${dropped}`);
        const rep = res.modules.find((x) => x.name === name)!;
        const energyErr = Math.abs(rep.energyKept - (1 - dropped / frob2(full)));
        assert.ok(energyErr < energyTol, `${precision} r=${r} ${name}: energy off by ${energyErr}`);
      }
    }
  }
  // Default rank = the largest input rank.
  assert.equal((await mergeAdapters(adapters, { method: 'svd', weights })).adapter.config.r, 3);
});

test('magnitude_prune = Σ w_k trim(ΔW_k)', async () => {
  await check(
    'magnitude_prune',
    (name) =>
      refLinear(
        refDeltas(name).map((d) => refTrim(d, 0.4)),
        weights,
      ),
    { density: 0.4 },
  );
});

test('ties (total and frequency) = trim, elect from unweighted trimmed deltas, disjoint mean', async () => {
  for (const majoritySign of ['total', 'frequency'] as const) {
    await check(
      'ties',
      (name) =>
        refTies(
          refDeltas(name).map((d) => refTrim(d, 0.5)),
          weights,
          majoritySign,
        ),
      {
        density: 0.5,
        majoritySign,
      },
    );
  }
});

test('dare_linear is unbiased: its mean over seeds approaches the linear merge', async () => {
  const name = 'model.layers.0.self_attn.v_proj';
  const want = refLinear(refDeltas(name), weights);
  const acc = new Float64Array(want.length);
  const runs = 150;
  for (let s = 0; s < runs; s++) {
    const res = await mergeAdapters(adapters, { method: 'dare_linear', weights, density: 0.5, seed: s, rank: 'full' });
    mergedDelta(res, name).forEach((v, i) => (acc[i] += v / runs));
  }
  // Per entry the estimator's std is about |w·ΔW|/√runs: allow 5 of those on the RMS.
  const rmsErr = Math.sqrt(frob2(acc.map((v, i) => v - want[i])) / want.length);
  const rms = Math.sqrt(frob2(want) / want.length);
  assert.ok(rmsErr < (5 * rms) / Math.sqrt(runs), `${rmsErr} vs ${rms}`);
});

test('entry-wise methods at the default rank give the best rank-r approximation of their dense result', async () => {
  const full = await mergeAdapters(adapters, { method: 'ties', weights, density: 0.5, rank: 'full' });
  const low = await mergeAdapters(adapters, { method: 'ties', weights, density: 0.5 });
  const name = 'model.layers.0.self_attn.q_proj';
  const [out, inp] = spec.shapes[name];
  const dense = mergedDelta(full, name);
  const got = mergedDelta(low, name);
  assert.equal(low.adapter.modules.get(name)!.rank, 3);
  const sig = refSingularValues(Array.from({ length: out }, (_, i) => dense.slice(i * inp, (i + 1) * inp)));
  const dropped = sig.slice(3).reduce((s, x) => s + x * x, 0);
  const resid = frob2(got.map((x, i) => x - dense[i]));
  assert.ok(Math.abs(resid - dropped) < 1e-5 * (1 + frob2(dense)));
  // Randomized path (forced by exactBelow 0): near-optimal residual at rank 2.
  const rnd = await mergeAdapters(adapters, {
    method: 'ties',
    weights,
    density: 0.5,
    rank: 2,
    svd: { exactBelow: 0, oversample: 4, powerIters: 4 },
  });
  const r2 = frob2(mergedDelta(rnd, name).map((x, i) => x - dense[i]));
  const best2 = sig.slice(2).reduce((s, x) => s + x * x, 0);
  assert.ok(r2 >= best2 * (1 - 1e-9) && r2 < best2 * 1.05, `${r2} vs optimal ${best2}`);
});

test('a module whose rank differs gets rank_pattern and alpha_pattern entries', async () => {
  const name = 'model.layers.0.self_attn.v_proj';
  const mixed = [randomAdapter(spec, 4), randomAdapter(spec, 5, { [name]: 2 })];
  const res = await mergeAdapters(mixed, { method: 'cat' });
  // q_proj: 3 + 3 = 6, v_proj: 3 + 2 = 5; equal counts → the larger rank is the default.
  assert.equal(res.adapter.config.r, 6);
  assert.equal(res.adapter.config.loraAlpha, 6);
  assert.deepEqual(res.adapter.config.rankPattern, { [name]: 5 });
  assert.deepEqual(res.adapter.config.alphaPattern, { [name]: 5 });
});
