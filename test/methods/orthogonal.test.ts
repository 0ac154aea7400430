// merge.method orthogonal_dropout: the partition of output units is disjoint and covering with 1/N
// shares; one merge equals N·w_k·ΔW_k on the units adapter k owns (float64 dense reference); the
// adapters' contributions are orthogonal; over draws the mean is Σ w_k ΔW_k (the expected scale).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeAdapters } from '../../shared/merge/index.ts';
import { nameHash } from '../../shared/merge/options.ts';
import { orthogonalPartition } from '../../shared/merge/orthogonal.ts';
import { deriveSeed } from '../../shared/tensor/random.ts';
import type { LoraAdapter, LoraModule } from '../../shared/lora/types.ts';
import { randomModule } from '../merge/helpers.ts';

const PATH = 'model.layers.0.self_attn.q_proj';
const OUT = 24;
const IN = 10;

function adapter(rank: number, alpha: number, seed: number): LoraAdapter {
  const m = randomModule(OUT, IN, rank, alpha / rank, seed);
  return {
    config: { r: rank, loraAlpha: alpha, targetModules: ['q_proj'], loraDropout: 0, useRslora: false },
    modules: new Map([[PATH, m]]),
  };
}

/** Dense s·B·A in float64, [out, in]. */
function dense(m: LoraModule): Float64Array {
  const out = new Float64Array(m.outFeatures * m.inFeatures);
  for (let o = 0; o < m.outFeatures; o++)
    for (let i = 0; i < m.inFeatures; i++) {
      let acc = 0;
      for (let j = 0; j < m.rank; j++) acc += m.b[o * m.rank + j] * m.a[j * m.inFeatures + i];
      out[o * m.inFeatures + i] = m.scaling * acc;
    }
  return out;
}

test('partition: disjoint, covering, shares of ⌊units/N⌋ or ⌈units/N⌉, each unit owned uniformly', () => {
  const N = 3;
  const counts = Array.from({ length: 12 }, () => new Array(N).fill(0));
  for (let seed = 0; seed < 600; seed++) {
    const owner = orthogonalPartition(12, N, seed);
    const shares = new Array(N).fill(0);
    owner.forEach((k, o) => {
      assert.ok(k >= 0 && k < N);
      shares[k]++;
      counts[o][k]++;
    });
    assert.deepEqual(shares, [4, 4, 4]);
  }
  // Each unit's owner is uniform: 600 draws, expected 200 each (binomial sd ≈ 11.5).
  for (const c of counts) for (const v of c) assert.ok(Math.abs(v - 200) < 60, `unit owner counts ${c}`);
  const odd = orthogonalPartition(10, 3, 1);
  const shares = [0, 0, 0];
  odd.forEach((k) => shares[k]++);
  assert.deepEqual(shares.sort(), [3, 3, 4]);
});

test('one merge: unit o carries N·w_k·ΔW_k for its owner k and nothing of the others (float64 reference)', async () => {
  const inputs = [adapter(4, 8, 1), adapter(2, 4, 2), adapter(3, 3, 3)];
  const weights = [1, 0.5, -2];
  const seed = 5;
  const { adapter: merged } = await mergeAdapters(inputs, { method: 'orthogonal_dropout', weights, seed });
  const out = merged.modules.get(PATH)!;
  assert.equal(out.rank, 9);
  const got = dense(out);
  const deltas = inputs.map((a) => dense(a.modules.get(PATH)!));
  const owner = orthogonalPartition(OUT, 3, deriveSeed(seed, nameHash(PATH), 0x0d));
  let scale = 0;
  for (const v of got) scale = Math.max(scale, Math.abs(v));
  for (let o = 0; o < OUT; o++) {
    const k = owner[o];
    for (let i = 0; i < IN; i++) {
      const want = 3 * weights[k] * deltas[k][o * IN + i];
      assert.ok(Math.abs(got[o * IN + i] - want) <= 1e-5 * scale, `unit ${o} (adapter ${k}), ${i}`);
    }
  }
  // Orthogonal by construction: each adapter's part has a support disjoint from the others'.
  const parts = [0, 1, 2].map((k) => {
    const p = new Float64Array(OUT * IN);
    for (let o = 0; o < OUT; o++) if (owner[o] === k) for (let i = 0; i < IN; i++) p[o * IN + i] = got[o * IN + i];
    return p;
  });
  for (let x = 0; x < 3; x++)
    for (let y = x + 1; y < 3; y++)
      assert.equal(
        parts[x].reduce((s, v, i) => s + v * parts[y][i], 0),
        0,
      );
  // A smaller rank truncates by SVD; factors space is refused.
  const low = await mergeAdapters(inputs, { method: 'orthogonal_dropout', weights, seed, rank: 4 });
  assert.equal(low.adapter.modules.get(PATH)!.rank, 4);
  await assert.rejects(
    mergeAdapters(inputs, { method: 'orthogonal_dropout', space: 'factors' }),
    /space "factors" is not available for method orthogonal_dropout/,
  );
});

test('expected scale: the mean over draws of the merged ΔW is Σ w_k ΔW_k', async () => {
  const inputs = [adapter(2, 4, 7), adapter(2, 2, 8)];
  const weights = [1, 2];
  const deltas = inputs.map((a) => dense(a.modules.get(PATH)!));
  const sum = deltas[0].map((v, i) => weights[0] * v + weights[1] * deltas[1][i]);
  const draws = 300;
  const mean = new Float64Array(OUT * IN);
  for (let seed = 0; seed < draws; seed++) {
    const { adapter: merged } = await mergeAdapters(inputs, { method: 'orthogonal_dropout', weights, seed });
    dense(merged.modules.get(PATH)!).forEach((v, i) => (mean[i] += v / draws));
  }
  // Each entry is N·w_k·ΔW_k[o,i] for a uniform k: the mean's error is about sd/√draws per entry.
  let err = 0;
  let norm = 0;
  for (let i = 0; i < sum.length; i++) {
    err += (mean[i] - sum[i]) ** 2;
    norm += sum[i] ** 2;
  }
  const rel = Math.sqrt(err / norm);
  assert.ok(rel < 0.15, `relative error of the mean ${rel}`);
  // Without the 1/(1 − p) rescaling the mean would be Σ w_k ΔW_k / N: far outside that tolerance.
});
