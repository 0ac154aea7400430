// CoTo schedule and masks (docs/COTO.md): values at known steps, determinism, the empirical
// activation rate, "at least one layer on", and identical masks in a separate process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { LayerActivity } from '../../shared/coto/activity.ts';
import {
  activeLayersAt,
  COTO_DEFAULTS,
  cotoMask,
  cotoProbability,
  cotoUniform,
  probabilityAt,
} from '../../shared/coto/schedule.ts';
import { ChorusError } from '../../shared/errors.ts';

test('probability: p0 + (p1 − p0)·step/ceil(0.75·total), capped at p1', () => {
  // total 100 → ramp over ceil(75) = 75 steps.
  assert.equal(cotoProbability(0, 100), 0.1);
  assert.ok(Math.abs(cotoProbability(30, 100) - (0.1 + (0.9 * 30) / 75)) < 1e-15); // 0.46
  assert.ok(Math.abs(cotoProbability(30, 100) - 0.46) < 1e-12);
  assert.equal(cotoProbability(75, 100), 1);
  assert.equal(cotoProbability(99, 100), 1);
  // total 10 → ceil(7.5) = 8 ramp steps: step 4 gives 0.1 + 0.9·4/8 = 0.55.
  assert.ok(Math.abs(cotoProbability(4, 10) - 0.55) < 1e-12);
  assert.ok(Math.abs(cotoProbability(7, 10) - (0.1 + (0.9 * 7) / 8)) < 1e-12);
  assert.equal(cotoProbability(8, 10), 1);
  // Configurable: from 0 to 0.8 over the first half of 20 steps (10 steps): step 5 → 0.4.
  assert.ok(Math.abs(cotoProbability(5, 20, { pStart: 0, pEnd: 0.8, rampFraction: 0.5 }) - 0.4) < 1e-12);
  assert.equal(cotoProbability(15, 20, { pStart: 0, pEnd: 0.8, rampFraction: 0.5 }), 0.8);
  assert.equal(cotoProbability(0, 20, { rampFraction: 0 }), 1);
  assert.throws(() => cotoProbability(-1, 10), ChorusError);
  assert.throws(() => cotoProbability(0, 0), /total steps must be a positive integer/);
  assert.throws(() => cotoProbability(0, 10, { pStart: 1.5 }), /probabilities must lie in \[0, 1\]/);
});

test('uniforms are a pure function of (seed, step, layer, attempt) and spread over [0, 1)', () => {
  assert.equal(cotoUniform(42, 7, 3, 0), cotoUniform(42, 7, 3, 0));
  const keys: Array<[number, number, number, number]> = [
    [42, 7, 3, 0],
    [43, 7, 3, 0],
    [42, 8, 3, 0],
    [42, 7, 4, 0],
    [42, 7, 3, 1],
  ];
  const values = keys.map((k) => cotoUniform(...k));
  assert.equal(new Set(values).size, values.length);
  // Big seeds (beyond 2^32) and bigint seeds are distinct keys too.
  assert.notEqual(cotoUniform(2 ** 40, 0, 0, 0), cotoUniform(0, 0, 0, 0));
  assert.equal(cotoUniform(2n ** 40n, 0, 0, 0), cotoUniform(2 ** 40, 0, 0, 0));
  // Decile histogram of 20000 draws: each bin expects 2000 (s.d. ≈ 42); allow ±200.
  const bins = new Array<number>(10).fill(0);
  for (let step = 0; step < 2000; step++)
    for (let layer = 0; layer < 10; layer++) bins[Math.floor(cotoUniform(1, step, layer, 0) * 10)]++;
  for (const b of bins) assert.ok(Math.abs(b - 2000) < 200, `bins ${bins}`);
});

test('masks are deterministic and the activation rate matches p', () => {
  assert.deepEqual(cotoMask(5, 17, 12, 0.3), cotoMask(5, 17, 12, 0.3));
  for (const p of [0.1, 0.3, 0.7]) {
    const counter = new LayerActivity(16);
    const steps = 2000;
    for (let step = 0; step < steps; step++) counter.record(cotoMask(9, step, 16, p));
    const rate = counter.counts.reduce((a, b) => a + b, 0) / (steps * 16);
    // The redraw rule lifts the rate slightly: E[on | ≥1 on] = p / (1 − (1−p)^16).
    const expected = p / (1 - (1 - p) ** 16);
    const se = Math.sqrt((p * (1 - p)) / (steps * 16));
    assert.ok(Math.abs(rate - expected) < 5 * se, `p=${p}: rate ${rate}, expected ${expected} ± ${5 * se}`);
    for (const r of counter.rates())
      assert.ok(Math.abs(r - expected) < 5 * Math.sqrt((p * (1 - p)) / steps), `per-layer rate ${r}`);
  }
});

test('at least one layer is always on, by a deterministic redraw', () => {
  let redraws = 0;
  for (let step = 0; step < 3000; step++) {
    const m = cotoMask(3, step, 2, 0.05); // all off with probability 0.9025 on the first attempt
    assert.ok(m.some(Boolean), `step ${step}: no layer on`);
    assert.deepEqual(cotoMask(3, step, 2, 0.05), m);
    if (!(cotoUniform(3, step, 0, 0) <= 0.05 || cotoUniform(3, step, 1, 0) <= 0.05)) redraws++;
  }
  assert.ok(redraws > 2000, 'the redraw path was exercised');
  assert.ok(cotoMask(1, 0, 3, 0).some(Boolean), 'p = 0 still turns one layer on');
  assert.deepEqual(cotoMask(1, 0, 4, 1), [true, true, true, true]);
  // Step 0 uses p0: with 32 layers at p = 0.1 most are off.
  const first = activeLayersAt(COTO_DEFAULTS, 11, 0, 1000, 32);
  assert.ok(first.filter(Boolean).length < 12, `${first.filter(Boolean).length} of 32 on at p0`);
  // The last quarter is plain LoRA.
  assert.ok(activeLayersAt(COTO_DEFAULTS, 11, 900, 1000, 32).every(Boolean));
});

test('another Node process computes the same masks', () => {
  const child = fileURLToPath(new URL('./mask-child.ts', import.meta.url));
  const res = spawnSync(process.execPath, ['--import', 'tsx', child, '1234', '60', '8'], { encoding: 'utf8' });
  assert.equal(res.status, 0, res.stderr);
  const theirs = JSON.parse(res.stdout) as boolean[][];
  const ours = Array.from({ length: 60 }, (_, step) => activeLayersAt(COTO_DEFAULTS, 1234, step, 60, 8));
  assert.deepEqual(theirs, ours);
  assert.ok(
    ours.some((m) => !m.every(Boolean)),
    'masks vary during the ramp',
  );
});

test('CoTo off (schedule null): every layer trains at every step, p = 1', () => {
  for (const step of [0, 5, 99]) {
    assert.deepEqual(activeLayersAt(null, 7, step, 100, 6), new Array(6).fill(true));
    assert.equal(probabilityAt(null, step, 100), 1);
  }
  assert.equal(probabilityAt(COTO_DEFAULTS, 0, 100), 0.1);
});
