// The float32 engine path against the float64 reference path (`precision: 'float64'`, plain loops with
// Householder QR and Jacobi SVD): every method, rounds and extraction, on small and awkward cases. The
// documented accuracy (docs/MERGE.md): relative error of the merged ΔW at most 1e-5.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  extractAdapter,
  mergeAdapters,
  reconcileReplicas,
  type MergeMethod,
  type MergeOptions,
  type NamedTensor,
} from '../../shared/merge/index.ts';
import type { LoraAdapter, LoraModule } from '../../shared/lora/types.ts';
import { randomAdapter, rng, type Spec } from './helpers.ts';

/** scaling · B A in float64 (row-major). */
function delta(m: LoraModule): Float64Array {
  const out = new Float64Array(m.outFeatures * m.inFeatures);
  for (let i = 0; i < m.outFeatures; i++)
    for (let p = 0; p < m.rank; p++) {
      const f = m.scaling * m.b[i * m.rank + p];
      for (let j = 0; j < m.inFeatures; j++) out[i * m.inFeatures + j] += f * m.a[p * m.inFeatures + j];
    }
  return out;
}

function relErr(got: Float64Array, want: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

const TOL = 1e-5;

function sameDeltas(a32: LoraAdapter, a64: LoraAdapter, what: string): number {
  let worst = 0;
  for (const [name, m64] of a64.modules) {
    const err = relErr(delta(a32.modules.get(name)!), delta(m64));
    assert.ok(err <= TOL, `${what} ${name}: relative error ${err}`);
    worst = Math.max(worst, err);
  }
  return worst;
}

async function bothPrecisions(adapters: LoraAdapter[], options: MergeOptions, what: string) {
  const r32 = await mergeAdapters(adapters, { ...options, precision: 'float32' });
  const r64 = await mergeAdapters(adapters, { ...options, precision: 'float64' });
  sameDeltas(r32.adapter, r64.adapter, what);
  r32.modules.forEach((rep, i) =>
    assert.ok(Math.abs(rep.energyKept - r64.modules[i].energyKept) < 1e-6, `${what} ${rep.name}: energy`),
  );
}

const spec: Spec = {
  shapes: { 'model.layers.0.self_attn.q_proj': [64, 48], 'model.layers.0.self_attn.v_proj': [40, 64] },
  rank: 4,
  alpha: 8,
};
const adapters = [
  randomAdapter(spec, 1),
  randomAdapter({ ...spec, alpha: 4 }, 2),
  randomAdapter({ ...spec, rslora: true }, 3),
  randomAdapter(spec, 4),
];
const weights = [1, 0.5, -0.7, 0.3];

test('every method: float32 on the engine matches the float64 reference (relative ΔW error ≤ 1e-5)', async () => {
  const cases: [MergeMethod, Partial<MergeOptions>][] = [
    ['linear', {}],
    ['cat', { rank: 5 }],
    ['svd', { rank: 3 }],
    ['ties', { density: 0.5, rank: 'full' }],
    ['ties', { density: 0.4, majoritySign: 'frequency', rank: 'full' }],
    ['ties', { density: 0.5 }],
    ['dare_ties', { density: 0.6, seed: 3, rank: 'full' }],
    ['dare_linear', { density: 0.6, seed: 3, rank: 'full' }],
    ['magnitude_prune', { density: 0.3, rank: 'full' }],
    // The randomized SVD (engine products vs float64 loops, same Gaussian test matrix).
    ['ties', { density: 0.5, rank: 4, svd: { exactBelow: 0, oversample: 6, powerIters: 3 } }],
  ];
  for (const [method, extra] of cases) {
    await bothPrecisions(adapters, { method, weights, ...extra }, `${method} ${JSON.stringify(extra)}`);
  }
  for (const method of ['svd', 'ties', 'linear'] as const) {
    const extra = method === 'ties' ? { density: 0.5 } : {};
    await bothPrecisions(adapters, { method, weights, space: 'factors', ...extra }, `factors ${method}`);
  }
});

/** Replicas of one adapter that drifted apart by `drift` (relative), as after a few training steps. */
function drifted(base: LoraAdapter, seed: number, drift: number): LoraAdapter {
  const g = rng(seed);
  const modules = new Map<string, LoraModule>();
  for (const [name, m] of base.modules) {
    const a = Float32Array.from(m.a, (x) => x * (1 + drift * g.normal()));
    const b = Float32Array.from(m.b, (x) => x * (1 + drift * g.normal()));
    modules.set(name, { ...m, a, b });
  }
  return { config: base.config, modules };
}

function withZeroB(ad: LoraAdapter): LoraAdapter {
  const modules = new Map([...ad.modules].map(([n, m]) => [n, { ...m, b: new Float32Array(m.b.length) }]));
  return { config: ad.config, modules };
}

test('awkward low-rank inputs: near-identical replicas, a zero B, a duplicate, weights 1 and 1e-4', async () => {
  const base = adapters[0];
  const sets: [string, LoraAdapter[], number[]][] = [
    ['replicas drifted by 1e-3', [base, drifted(base, 5, 1e-3), drifted(base, 6, 1e-3)], [1, 1, 1]],
    ['replicas drifted by 1e-6', [base, drifted(base, 7, 1e-6)], [0.5, 0.5]],
    ['one zero B', [base, withZeroB(adapters[1]), adapters[2]], [1, 1, 1]],
    ['an exact duplicate', [base, base, adapters[1]], [1, 2, 1]],
    ['weights 1 and 1e-4', [base, adapters[1]], [1, 1e-4]],
  ];
  for (const [what, set, w] of sets) {
    await bothPrecisions(set, { method: 'svd', weights: w, rank: 4 }, `svd, ${what}`);
    await bothPrecisions(set, { method: 'linear', weights: w }, `linear, ${what}`);
  }
});

test('rounds: mean of drifted replicas (and of a replica whose B is still zero) matches float64', async () => {
  const base = adapters[2];
  for (const [what, reps] of [
    ['drifted 1e-2', [base, drifted(base, 8, 1e-2), drifted(base, 9, 1e-2), drifted(base, 10, 1e-2)]],
    ['drifted 1e-4', [base, drifted(base, 11, 1e-4)]],
    ['one zero B', [drifted(base, 12, 1e-2), withZeroB(drifted(base, 13, 1e-2))]],
  ] as const) {
    for (const method of ['mean', 'cat_svd'] as const) {
      const r32 = await reconcileReplicas([...reps], { method, weights: [3, 1, 1, 1].slice(0, reps.length) });
      const r64 = await reconcileReplicas([...reps], {
        method,
        weights: [3, 1, 1, 1].slice(0, reps.length),
        precision: 'float64',
      });
      sameDeltas(r32.adapter, r64.adapter, `${method}, ${what}`);
    }
  }
});

test('extraction: fixed rank and energy, exact and randomized SVD, match float64', async () => {
  const g = rng(77);
  const shapes: Record<string, [number, number]> = {
    'model.layers.0.self_attn.q_proj.weight': [48, 40],
    'model.layers.0.mlp.up_proj.weight': [72, 40],
  };
  const base = new Map<string, NamedTensor>();
  const tuned = new Map<string, NamedTensor>();
  for (const [name, [m, n]] of Object.entries(shapes)) {
    const b = Float32Array.from({ length: m * n }, () => g.normal() * 0.05);
    // A rank-6 delta with decaying σ plus a dense tail 1e-4 below.
    const u = Array.from({ length: 6 * m }, () => g.normal());
    const v = Array.from({ length: 6 * n }, () => g.normal());
    const t = Float32Array.from(b, (x, idx) => {
      const i = Math.floor(idx / n);
      const j = idx % n;
      let acc = 0;
      for (let p = 0; p < 6; p++) acc += 0.6 ** p * u[p * m + i] * v[p * n + j];
      return x + 0.01 * acc + 1e-6 * g.normal();
    });
    base.set(name, { shape: [m, n], data: b });
    tuned.set(name, { shape: [m, n], data: t });
  }
  const randomized = { exactBelow: 0, oversample: 6, powerIters: 3 };
  for (const extra of [
    { rank: 4 },
    { energy: 0.99 },
    { rank: 4, svd: randomized },
    { energy: 0.99, svd: randomized },
  ]) {
    const r32 = await extractAdapter(base, tuned, { ...extra, precision: 'float32' });
    const r64 = await extractAdapter(base, tuned, { ...extra, precision: 'float64' });
    assert.deepEqual(
      r32.modules.map((x) => x.rank),
      r64.modules.map((x) => x.rank),
    );
    sameDeltas(r32.adapter, r64.adapter, `extract ${JSON.stringify(extra)}`);
  }
});

test('real shapes (SmolLM2-135M q_proj 576×576, v_proj 192×576): svd and ties match float64', async () => {
  const smol: Spec = {
    shapes: { 'model.layers.0.self_attn.q_proj': [576, 576], 'model.layers.0.self_attn.v_proj': [192, 576] },
    rank: 8,
    alpha: 16,
  };
  const ads = [randomAdapter(smol, 11), randomAdapter(smol, 12), randomAdapter(smol, 13)];
  await bothPrecisions(ads, { method: 'svd', weights: [1, 0.5, 0.25] }, 'smol svd');
  await bothPrecisions(ads, { method: 'ties', density: 0.3, weights: [1, 0.5, 0.25] }, 'smol ties');
});
