import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reconcileReplicas } from '../../shared/merge/index.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';
import {
  deltaOf,
  flat,
  frob2,
  maxAbs,
  maxAbsDiff,
  randomAdapter,
  refLinear,
  refSingularValues,
  type Spec,
} from './helpers.ts';

const spec: Spec = {
  shapes: { 'model.layers.0.self_attn.q_proj': [16, 12], 'model.layers.1.self_attn.q_proj': [16, 12] },
  rank: 3,
  alpha: 8,
  rslora: true,
};
const names = Object.keys(spec.shapes);
const replicas = [randomAdapter(spec, 21), randomAdapter(spec, 22), randomAdapter(spec, 23)];

test('mean: best rank-r approximation of the ΔW mean, replicas config kept', async () => {
  const res = await reconcileReplicas(replicas, { weights: [1, 2, 1] });
  assert.deepEqual(res.adapter.config, replicas[0].config);
  for (const name of names) {
    const want = refLinear(
      replicas.map((r) => flat(deltaOf(r.modules.get(name)!))),
      [0.25, 0.5, 0.25],
    );
    const mod = res.adapter.modules.get(name)!;
    assert.equal(mod.rank, 3);
    assert.equal(mod.scaling, replicas[0].modules.get(name)!.scaling);
    const got = flat(deltaOf(mod));
    const [out, inp] = spec.shapes[name];
    const sig = refSingularValues(Array.from({ length: out }, (_, i) => want.slice(i * inp, (i + 1) * inp)));
    const resid = frob2(got.map((x, i) => x - want[i]));
    assert.ok(Math.abs(resid - sig.slice(3).reduce((s, x) => s + x * x, 0)) < 1e-5 * frob2(want));
  }
  // cat_svd is the same computation.
  const alias = await reconcileReplicas(replicas, { weights: [1, 2, 1], method: 'cat_svd' });
  for (const name of names) assert.deepEqual(alias.adapter.modules.get(name)!.b, res.adapter.modules.get(name)!.b);
});

test('cat is the exact mean (rank grows); factor_mean is the biased FedAvg of A and B', async () => {
  const cat = await reconcileReplicas(replicas, { method: 'cat' });
  const fed = await reconcileReplicas(replicas, { method: 'factor_mean' });
  for (const name of names) {
    const want = refLinear(
      replicas.map((r) => flat(deltaOf(r.modules.get(name)!))),
      [1 / 3, 1 / 3, 1 / 3],
    );
    assert.equal(cat.adapter.modules.get(name)!.rank, 9);
    assert.ok(maxAbsDiff(flat(deltaOf(cat.adapter.modules.get(name)!)), want) < 1e-5 * maxAbs(want));
    const a = refLinear(
      replicas.map((r) => Array.from(r.modules.get(name)!.a)),
      [1 / 3, 1 / 3, 1 / 3],
    );
    assert.ok(maxAbsDiff(fed.adapter.modules.get(name)!.a, a) < 1e-6);
    // The product of averages is not the average of products.
    assert.ok(maxAbsDiff(flat(deltaOf(fed.adapter.modules.get(name)!)), want) > 1e-2);
  }
});

function withSharedA(base: LoraAdapter, seed: number, zeroB: boolean): LoraAdapter {
  const other = randomAdapter(spec, seed);
  const modules = new Map(
    [...base.modules].map(([name, m]) => [
      name,
      { ...m, a: m.a.slice(), b: zeroB ? new Float32Array(m.b.length) : other.modules.get(name)!.b },
    ]),
  );
  return { config: base.config, modules };
}

test('shared A (only B trained, or an untouched layer): exact mean of B, A unchanged', async () => {
  const base = replicas[0];
  const reps = [withSharedA(base, 31, false), withSharedA(base, 32, false)];
  const res = await reconcileReplicas(reps);
  for (const name of names) {
    const mod = res.adapter.modules.get(name)!;
    assert.deepEqual(mod.a, base.modules.get(name)!.a);
    const b = refLinear(
      reps.map((r) => Array.from(r.modules.get(name)!.b)),
      [0.5, 0.5],
    );
    assert.ok(maxAbsDiff(mod.b, b) < 1e-6);
  }
});

test('all-zero ΔW with different A (B still at init): ΔW stays 0 and A keeps non-zero rows', async () => {
  const reps = [withSharedA(replicas[0], 41, true), withSharedA(replicas[1], 42, true)];
  const res = await reconcileReplicas(reps);
  for (const name of names) {
    const mod = res.adapter.modules.get(name)!;
    assert.equal(maxAbs(mod.b), 0);
    for (let j = 0; j < mod.rank; j++) {
      const row = mod.a.subarray(j * mod.inFeatures, (j + 1) * mod.inFeatures);
      assert.ok(frob2(row) > 0.1, `row ${j} of A is (nearly) zero`);
    }
  }
});

test('replicas that disagree on rank are refused with the module named', async () => {
  const other = randomAdapter({ ...spec, rank: 2 }, 50);
  await assert.rejects(
    async () => await reconcileReplicas([replicas[0], other], { labels: ['r0', 'r1'] }),
    /replicas disagree on module model\.layers\.0\.self_attn\.q_proj: rank 3/,
  );
});

test('a smaller output rank keeps the replicas scaling (alpha follows r, rsLoRA included)', async () => {
  const res = await reconcileReplicas(replicas, { rank: 2 });
  const s = replicas[0].modules.get(names[0])!.scaling;
  assert.equal(res.adapter.config.r, 2);
  assert.ok(Math.abs(res.adapter.config.loraAlpha / Math.sqrt(2) - s) < 1e-12);
  for (const name of names) {
    const mod = res.adapter.modules.get(name)!;
    assert.equal(mod.rank, 2);
    assert.equal(mod.scaling, s);
  }
});
