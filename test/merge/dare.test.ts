// DARE (dare_linear, dare_ties) against a reference that shares nothing with the library's random
// numbers: each adapter's mask is read back from single-adapter merges (kept entries are ΔW/density,
// dropped ones 0), then
//   - the full merge must equal Σ w_k m_k⊙ΔW_k/density (and TIES of those) computed here in float64,
//   - every mask keeps about `density` of the entries, and masks of different adapters, and of
//     different modules, agree only as often as independent draws do (d² + (1−d)²).
// The statistical check is calibrated on this file's own DARE (xorshift32, test/merge/helpers.ts):
// independent masks from it pass, a mask shared across adapters or modules fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeAdapters, type MergeResult } from '../../shared/merge/index.ts';
import { deltaOf, flat, maxAbs, maxAbsDiff, randomAdapter, refLinear, refTies, rng, type Spec } from './helpers.ts';

const Q = 'model.layers.0.self_attn.q_proj';
const V = 'model.layers.3.mlp.down_proj';
const spec: Spec = { shapes: { [Q]: [48, 40], [V]: [24, 40] }, rank: 3, alpha: 6 };
const adapters = [randomAdapter(spec, 11), randomAdapter({ ...spec, alpha: 3 }, 12), randomAdapter(spec, 13)];
const weights = [1, 0.5, -0.7];
const density = 0.6;
const names = [Q, V];

const deltas = (name: string) => adapters.map((a) => flat(deltaOf(a.modules.get(name)!)));
const mergedDelta = (r: MergeResult, name: string) => flat(deltaOf(r.adapter.modules.get(name)!));

/** The reference's DARE: keep each entry with probability d (own generator), rescale by 1/d. */
function refDareMask(n: number, d: number, seed: number): boolean[] {
  const g = rng(seed);
  return Array.from({ length: n }, () => g.uniform() < d);
}

/** Mask of adapter k on every module, read back from a merge where only adapter k has weight. */
async function libraryMasks(k: number, seed: number): Promise<Map<string, boolean[]>> {
  const w = adapters.map((_, j) => (j === k ? 1 : 0));
  const res = await mergeAdapters(adapters, { method: 'dare_linear', weights: w, density, seed, rank: 'full' });
  const out = new Map<string, boolean[]>();
  for (const name of names) {
    const want = deltas(name)[k];
    const got = mergedDelta(res, name);
    const mask = got.map((v, i) => {
      const kept = Math.abs(v - want[i] / density) <= 1e-5 * (1 + Math.abs(want[i] / density));
      const dropped = Math.abs(v) <= 1e-5 * (1 + Math.abs(want[i]));
      assert.ok(
        kept !== dropped,
        `${name}[${i}] of adapter ${k}: ${v} is neither ΔW/density (${want[i] / density}) nor 0`,
      );
      return kept;
    });
    out.set(name, mask);
  }
  return out;
}

async function masksOfAll(seed: number): Promise<Array<Map<string, boolean[]>>> {
  const out = [];
  for (let k = 0; k < adapters.length; k++) out.push(await libraryMasks(k, seed));
  return out;
}

/** |observed − expected| in binomial standard deviations. */
function zScore(hits: number, n: number, p: number): number {
  return Math.abs(hits - n * p) / Math.sqrt(n * p * (1 - p));
}
const agreement = (a: boolean[], b: boolean[], n = Math.min(a.length, b.length)) =>
  a.slice(0, n).reduce((s, v, i) => s + (v === b[i] ? 1 : 0), 0);
const pAgree = density * density + (1 - density) * (1 - density);

/** Keep rate near d, and pairwise agreement near d² + (1−d)², across adapters and across modules. */
function independenceProblems(masks: Array<Map<string, boolean[]>>): string[] {
  const problems: string[] = [];
  masks.forEach((m, k) =>
    names.forEach((name) => {
      const x = m.get(name)!;
      const z = zScore(x.filter(Boolean).length, x.length, density);
      if (z > 5) problems.push(`adapter ${k} ${name}: keep rate ${z.toFixed(1)} sd from ${density}`);
    }),
  );
  for (let k = 0; k < masks.length; k++) {
    for (let l = k + 1; l < masks.length; l++) {
      for (const name of names) {
        const [a, b] = [masks[k].get(name)!, masks[l].get(name)!];
        const z = zScore(agreement(a, b), a.length, pAgree);
        if (z > 5) problems.push(`adapters ${k} and ${l} share ${name}'s mask (${z.toFixed(1)} sd)`);
      }
    }
    const [a, b] = [masks[k].get(Q)!, masks[k].get(V)!];
    const n = Math.min(a.length, b.length);
    const z = zScore(agreement(a, b, n), n, pAgree);
    if (z > 5) problems.push(`adapter ${k}: ${Q} and ${V} share a mask (${z.toFixed(1)} sd)`);
  }
  return problems;
}

test('the independence check passes independent masks and fails shared ones (calibrated on the reference DARE)', () => {
  const size = (name: string) => spec.shapes[name][0] * spec.shapes[name][1];
  const independent = adapters.map(
    (_, k) => new Map(names.map((n, j) => [n, refDareMask(size(n), density, 100 + 10 * k + j)])),
  );
  assert.deepEqual(independenceProblems(independent), []);
  const acrossAdapters = adapters.map(() => new Map(names.map((n, j) => [n, refDareMask(size(n), density, 7 + j)])));
  assert.ok(independenceProblems(acrossAdapters).some((p) => /share .*'s mask/.test(p)));
  const acrossModules = adapters.map((_, k) => new Map(names.map((n) => [n, refDareMask(size(n), density, 50 + k)])));
  assert.ok(independenceProblems(acrossModules).some((p) => /share a mask/.test(p)));
});

test('DARE masks: entries kept at ΔW/density or dropped, ~density kept, independent across adapters and modules', async () => {
  const masks = await masksOfAll(7);
  assert.deepEqual(independenceProblems(masks), []);
  // The seed picks the masks: another seed gives other (independent) masks; the same seed the same.
  const again = await libraryMasks(0, 7);
  const other = await libraryMasks(0, 8);
  for (const name of names) {
    assert.deepEqual(again.get(name), masks[0].get(name));
    assert.ok(zScore(agreement(other.get(name)!, masks[0].get(name)!), other.get(name)!.length, pAgree) < 5);
  }
});

test('dare_linear and dare_ties = linear / TIES of the masked, rescaled deltas (float64 reference)', async () => {
  const seed = 7;
  const masks = await masksOfAll(seed);
  const masked = (name: string) =>
    deltas(name).map((d, k) => d.map((v, i) => (masks[k].get(name)![i] ? v / density : 0)));
  const lin = await mergeAdapters(adapters, { method: 'dare_linear', weights, density, seed, rank: 'full' });
  const ties = await mergeAdapters(adapters, { method: 'dare_ties', weights, density, seed, rank: 'full' });
  for (const name of names) {
    const wantLin = refLinear(masked(name), weights);
    assert.ok(maxAbsDiff(mergedDelta(lin, name), wantLin) < 1e-5 * (1 + maxAbs(wantLin)), `dare_linear ${name}`);
    const wantTies = refTies(masked(name), weights, 'total');
    assert.ok(maxAbsDiff(mergedDelta(ties, name), wantTies) < 1e-5 * (1 + maxAbs(wantTies)), `dare_ties ${name}`);
  }
});
