// --space factors against PEFT's add_weighted_adapter written out with loops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeAdapters } from '../../shared/merge/index.ts';
import type { LoraModule } from '../../shared/lora/types.ts';
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
  shapes: { 'model.layers.0.mlp.up_proj': [9, 7], 'model.layers.1.mlp.up_proj': [9, 7] },
  rank: 4,
  alpha: 8,
};
const adapters = [
  randomAdapter(spec, 11),
  randomAdapter({ ...spec, alpha: 2, rslora: true }, 12),
  randomAdapter(spec, 13),
];
const weights = [0.8, -0.4, 1.3];
const names = Object.keys(spec.shapes);

const modsOf = (name: string) => adapters.map((a) => a.modules.get(name)!);
const sqrtW = (name: string) => modsOf(name).map((m, k) => Math.sqrt(Math.abs(weights[k] * m.scaling)));
const signW = () => weights.map((w) => (w < 0 ? -1 : 1));

function expectFactors(got: LoraModule, a: number[], b: number[]) {
  assert.equal(got.scaling, 1);
  assert.ok(maxAbsDiff(got.a, a) < 1e-5 * (1 + maxAbs(a)));
  assert.ok(maxAbsDiff(got.b, b) < 1e-5 * (1 + maxAbs(b)));
}

test('factors linear: A = Σ sign(w)√(|w|s) A_k, B = Σ √(|w|s) B_k (cross terms and all)', async () => {
  const res = await mergeAdapters(adapters, { method: 'linear', weights, space: 'factors' });
  for (const name of names) {
    const mods = modsOf(name);
    const wa = sqrtW(name).map((x, k) => x * signW()[k]);
    const a = refLinear(
      mods.map((m) => Array.from(m.a)),
      wa,
    );
    const b = refLinear(
      mods.map((m) => Array.from(m.b)),
      sqrtW(name),
    );
    expectFactors(res.adapter.modules.get(name)!, a, b);
  }
  assert.equal(res.adapter.config.loraAlpha, 4);
  assert.equal(res.adapter.config.useRslora, false);
});

test('factors ties and magnitude_prune act on A and B separately', async () => {
  for (const majoritySign of ['total', 'frequency'] as const) {
    const res = await mergeAdapters(adapters, {
      method: 'ties',
      weights,
      density: 0.5,
      majoritySign,
      space: 'factors',
    });
    for (const name of names) {
      const mods = modsOf(name);
      const wa = sqrtW(name).map((x, k) => x * signW()[k]);
      const a = refTies(
        mods.map((m) => refTrim(Array.from(m.a), 0.5)),
        wa,
        majoritySign,
      );
      const b = refTies(
        mods.map((m) => refTrim(Array.from(m.b), 0.5)),
        sqrtW(name),
        majoritySign,
      );
      expectFactors(res.adapter.modules.get(name)!, a, b);
    }
  }
  const res = await mergeAdapters(adapters, { method: 'magnitude_prune', weights, density: 0.3, space: 'factors' });
  for (const name of names) {
    const mods = modsOf(name);
    const wa = sqrtW(name).map((x, k) => x * signW()[k]);
    const a = refLinear(
      mods.map((m) => refTrim(Array.from(m.a), 0.3)),
      wa,
    );
    const b = refLinear(
      mods.map((m) => refTrim(Array.from(m.b), 0.3)),
      sqrtW(name),
    );
    expectFactors(res.adapter.modules.get(name)!, a, b);
  }
});

test('factors svd: best rank-r approximation of Σ w ΔW with σ on B and orthonormal rows of A', async () => {
  const res = await mergeAdapters(adapters, { method: 'svd', weights, rank: 2, space: 'factors' });
  for (const name of names) {
    const [out, inp] = spec.shapes[name];
    const full = refLinear(
      modsOf(name).map((m) => flat(deltaOf(m))),
      weights,
    );
    const mod = res.adapter.modules.get(name)!;
    const got = flat(deltaOf(mod));
    const sig = refSingularValues(Array.from({ length: out }, (_, i) => full.slice(i * inp, (i + 1) * inp)));
    const resid = frob2(got.map((x, i) => x - full[i]));
    assert.ok(Math.abs(resid - sig.slice(2).reduce((s, x) => s + x * x, 0)) < 1e-5 * frob2(full));
    for (let i = 0; i < 2; i++) {
      let norm = 0;
      for (let c = 0; c < inp; c++) norm += mod.a[i * inp + c] ** 2;
      assert.ok(Math.abs(norm - 1) < 1e-5);
    }
  }
});

test('a single rsLoRA adapter with weight 1 is reproduced exactly (the upstream over-scaling bug)', async () => {
  const one = [randomAdapter({ ...spec, rslora: true, alpha: 16 }, 14)];
  for (const method of ['linear', 'cat', 'svd', 'ties'] as const) {
    for (const space of ['delta', 'factors'] as const) {
      const res = await mergeAdapters(one, { method, space, density: method === 'ties' ? 1 : undefined });
      for (const name of names) {
        const want = flat(deltaOf(one[0].modules.get(name)!));
        const got = flat(deltaOf(res.adapter.modules.get(name)!));
        assert.ok(maxAbsDiff(got, want) < 1e-5 * maxAbs(want), `${method}/${space}`);
      }
    }
  }
});

test('factors cat equals delta cat; factors linear with unequal ranks is refused', async () => {
  const d = await mergeAdapters(adapters, { method: 'cat', weights });
  const f = await mergeAdapters(adapters, { method: 'cat', weights, space: 'factors' });
  for (const name of names) {
    assert.deepEqual(f.adapter.modules.get(name)!.a, d.adapter.modules.get(name)!.a);
    assert.deepEqual(f.adapter.modules.get(name)!.b, d.adapter.modules.get(name)!.b);
  }
  const mixed = [randomAdapter(spec, 15), randomAdapter({ ...spec, rank: 2 }, 16)];
  await assert.rejects(
    async () => await mergeAdapters(mixed, { method: 'linear', space: 'factors', labels: ['a/', 'b/'] }),
    /needs equal ranks: module model\.layers\.0\.mlp\.up_proj has rank 4 in a\/ but 2 in b\//,
  );
});
