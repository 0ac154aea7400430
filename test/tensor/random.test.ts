// fillNormal draws Box–Muller pairs with the generator inlined (init-model's hot loop); it must give
// exactly the values of successive SplitMix32(seed).normal() calls, which small models, LoRA A and the
// tests' seeds are defined by.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SplitMix32, fillNormal } from '../../shared/tensor/random.ts';

test('fillNormal equals successive SplitMix32.normal() calls bit for bit (odd and even lengths, large seeds)', () => {
  for (const [n, seed, std, mean] of [
    [1, 1, 1, 0],
    [2, 5, 0.02, 0],
    [7, 123456789, 3, 1],
    [10_001, 2 ** 40 + 3, 0.02, 0.5],
  ] as const) {
    const got = fillNormal(new Float32Array(n), seed, std, mean);
    const rng = new SplitMix32(seed);
    for (let i = 0; i < n; i++) assert.equal(got[i], Math.fround(mean + std * rng.normal()), `n ${n}, index ${i}`);
  }
});
