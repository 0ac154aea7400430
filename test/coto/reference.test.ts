// CoTo's schedule against the reference implementation as ../shared/CoTo.md (docs/COTO.md) records it:
// p(step) = p0 + (p1 − p0)·step/ceil(0.75·total) capped at p1 with p0 = 0.1, p1 = 1; per layer u ≤ p;
// redraw while no layer is on; step 0 uses p0. The reference here is written from that text alone
// (its own loops, no shared code but the uniform source), then the empirical per-layer activation
// rate over a whole run is held against p(t) within binomial bounds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { activeLayersAt, COTO_DEFAULTS, cotoMask, cotoProbability, cotoUniform } from '../../shared/coto/schedule.ts';

/** The published scheduler's p(step), from the text. */
function refP(step: number, total: number): number {
  const rampSteps = Math.ceil(0.75 * total);
  return Math.min(0.1 + (0.9 * step) / rampSteps, 1.0);
}

/** The reference draw: each layer on when u ≤ p; all off → draw again (next attempt). */
function refMask(seed: number, step: number, layers: number, p: number): { mask: boolean[]; attempts: number } {
  for (let attempt = 0; ; attempt++) {
    const mask: boolean[] = [];
    for (let l = 0; l < layers; l++) mask.push(cotoUniform(seed, step, l, attempt) <= p);
    if (mask.includes(true)) return { mask, attempts: attempt + 1 };
  }
}

test('the defaults are the published scheduler’s: p0 = 0.1, p1 = 1, ramp 0.75', () => {
  assert.deepEqual(COTO_DEFAULTS, { pStart: 0.1, pEnd: 1, rampFraction: 0.75, shapleySamples: 8 });
});

test('p(t) equals the reference formula at every step of runs of 1..300 steps', () => {
  let checked = 0;
  for (let total = 1; total <= 300; total++) {
    for (let step = 0; step < total; step++) {
      const got = cotoProbability(step, total);
      const want = refP(step, total);
      assert.ok(Math.abs(got - want) < 1e-15, `total ${total}, step ${step}: ${got} vs ${want}`);
      checked++;
    }
    // Step 0 uses p0; from ceil(0.75·total) on, p = 1 (the last quarter is plain LoRA).
    assert.equal(cotoProbability(0, total), 0.1);
    const rampEnd = Math.ceil(0.75 * total);
    for (let step = rampEnd; step < total; step++) assert.equal(cotoProbability(step, total), 1);
    if (rampEnd >= 2) assert.ok(cotoProbability(rampEnd - 1, total) < 1, `total ${total}: p < 1 before the ramp ends`);
  }
  assert.equal(checked, (300 * 301) / 2);
});

test('the per-layer draw is u ≤ p (inclusive), one draw per layer, at every step of a run', () => {
  const total = 200;
  const layers = 6;
  for (const seed of [1, 77, 2 ** 33 + 5]) {
    for (let step = 0; step < total; step++) {
      const p = refP(step, total);
      assert.deepEqual(activeLayersAt(COTO_DEFAULTS, seed, step, total, layers), refMask(seed, step, layers, p).mask);
    }
  }
  // The boundary: a layer whose u equals p exactly is on.
  const u = cotoUniform(5, 3, 2, 0);
  assert.equal(cotoMask(5, 3, 4, u)[2], true);
  assert.equal(cotoMask(5, 3, 4, u - 1e-12)[2], false);
});

test('at least one layer: an all-off draw is redrawn with the next attempt, never patched', () => {
  // Two layers at p = 0.1: about 81 % of first draws are all off.
  let redrawn = 0;
  let multiple = 0;
  for (let step = 0; step < 2000; step++) {
    const ref = refMask(9, step, 2, 0.1);
    assert.deepEqual(cotoMask(9, step, 2, 0.1), ref.mask, `step ${step}`);
    if (ref.attempts > 1) redrawn++;
    if (ref.attempts > 3) multiple++;
  }
  assert.ok(redrawn > 1400 && multiple > 500, `redraws exercised: ${redrawn} redrawn, ${multiple} after ≥ 3 tries`);
  // One layer: it is always on (every redraw eventually turns it on).
  for (let step = 0; step < 200; step++) assert.deepEqual(cotoMask(4, step, 1, 0.1), [true]);
});

/**
 * P(layer on at step t) under the at-least-one rule: the redraw conditions a Bernoulli(p) vector on
 * "not all off", so E[on] = p / (1 − (1 − p)^L).
 */
function onProbability(p: number, layers: number): number {
  return p >= 1 ? 1 : p / (1 - (1 - p) ** layers);
}

test('empirical activation rate per layer over a run matches p(t) within binomial bounds', () => {
  const total = 3000;
  const layers = 8;
  const seed = 20250613;
  const windows = 10;
  const counts = Array.from({ length: layers }, () => 0);
  const windowOn = new Array<number>(windows).fill(0);
  const windowMean = new Array<number>(windows).fill(0);
  const windowVar = new Array<number>(windows).fill(0);
  let mean = 0;
  let variance = 0;
  for (let step = 0; step < total; step++) {
    const mask = activeLayersAt(COTO_DEFAULTS, seed, step, total, layers);
    const q = onProbability(refP(step, total), layers);
    const w = Math.floor((step * windows) / total);
    mask.forEach((on, l) => {
      if (on) {
        counts[l]++;
        windowOn[w]++;
      }
    });
    mean += q;
    variance += q * (1 - q);
    windowMean[w] += layers * q;
    windowVar[w] += layers * q * (1 - q); // layers within a step are nearly independent (see below)
    if (step >= Math.ceil(0.75 * total)) assert.ok(mask.every(Boolean), `step ${step}: the last quarter is plain LoRA`);
  }
  // Per layer: a sum of independent Bernoulli(q_t) over steps (Poisson binomial), 4.5 σ.
  const sd = Math.sqrt(variance);
  for (let l = 0; l < layers; l++) {
    assert.ok(
      Math.abs(counts[l] - mean) < 4.5 * sd,
      `layer ${l}: on ${counts[l]} of ${total} steps, expected ${mean.toFixed(1)} ± ${(4.5 * sd).toFixed(1)}`,
    );
  }
  // Per tenth of the run, all layers together: the rate follows the ramp, not just its average.
  // (The redraw correlates layers a little, negatively, which only narrows the true spread.)
  for (let w = 0; w < windows; w++) {
    const band = 4.5 * Math.sqrt(windowVar[w]) + 1e-9;
    assert.ok(
      Math.abs(windowOn[w] - windowMean[w]) < band,
      `window ${w}: ${windowOn[w]} layer-steps on, expected ${windowMean[w].toFixed(1)} ± ${band.toFixed(1)}`,
    );
  }
  // The test can tell: a schedule stuck at p0, or one that reached 1 at half the run, is far outside.
  const early = windowOn[0] / ((total / windows) * layers);
  assert.ok(early < 0.35, `early rate ${early}`);
});
