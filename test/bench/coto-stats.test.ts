// The CoTo benchmark's statistics: the 95 % interval and the verdict rule, on hand-checked samples.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { summarise } from '../../bench/coto/stats.ts';
import { verdict } from '../../bench/coto/report.ts';
import { seedPairs } from '../../bench/coto/lab.ts';
import { keepEvery, PROBES } from '../../bench/coto/probes.ts';

test('mean ± t·s/√n with Student t at n − 1 degrees of freedom', () => {
  // [1, 2, 3, 4, 5]: mean 3, s = √2.5, t(0.975, 4) = 2.776 → 2.776·1.5811/2.2361 = 1.9629.
  const s = summarise([1, 2, 3, 4, 5]);
  assert.equal(s.mean, 3);
  assert.ok(Math.abs(s.ci - (2.776 * Math.sqrt(2.5)) / Math.sqrt(5)) < 1e-12);
  // Two values: t(0.975, 1) = 12.706.
  assert.ok(Math.abs(summarise([0, 1]).ci - (12.706 * Math.sqrt(0.5)) / Math.sqrt(2)) < 1e-12);
  assert.ok(Number.isNaN(summarise([7]).ci));
});

test('verdicts: paired differences whose interval excludes 0, in the probe’s direction', () => {
  const higher = PROBES.find((p) => p.name === 'single')!;
  const lower = PROBES.find((p) => p.name === 'lmc_barrier')!;
  const base = [0.5, 0.6, 0.55, 0.52, 0.58];
  const up = base.map((x, i) => x + 0.1 + 0.01 * i);
  assert.equal(verdict(higher, up, base).call, 'better');
  assert.equal(verdict(higher, base, up).call, 'worse');
  assert.equal(verdict(lower, up, base).call, 'worse');
  const noisy = base.map((x, i) => x + (i % 2 ? 0.1 : -0.1));
  assert.equal(verdict(higher, noisy, base).call, 'cannot tell');
  assert.equal(verdict(higher, [0.6], [0.5]).call, 'too few seeds');
});

test('seed pairs and pruning patterns', () => {
  assert.deepEqual(seedPairs(2), [[0, 1]]);
  assert.deepEqual(seedPairs(3), [
    [0, 1],
    [1, 2],
    [2, 0],
  ]);
  assert.deepEqual(keepEvery(2, 5), [true, false, true, false, true]);
  assert.deepEqual(keepEvery(3, 7), [true, false, false, true, false, false, true]);
});
