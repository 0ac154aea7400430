// AdamW, LR schedule and clipping against independent float64 computations written here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adamwUpdate } from '../../shared/train/adamw.ts';
import { learningRate } from '../../shared/train/lr-schedule.ts';
import { clipCoefficient, globalNorm } from '../../shared/train/clip.ts';

function close(a: number, b: number, tol: number, what: string) {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

test('AdamW: three steps match a hand-written float64 reference (decoupled decay, bias correction)', () => {
  const n = 7;
  const p = Float32Array.from({ length: n }, (_, i) => Math.sin(i + 1));
  const m = new Float32Array(n);
  const v = new Float32Array(n);
  const ref = Array.from(p, Number);
  const rm = new Array(n).fill(0);
  const rv = new Array(n).fill(0);
  const h = { lr: 0.05, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 };
  for (let t = 1; t <= 3; t++) {
    const g = Float32Array.from({ length: n }, (_, i) => Math.cos(i * t) * 3);
    const scale = 0.25; // summed gradients over 4 tokens
    adamwUpdate(p, g, m, v, 0, n, t, scale, h);
    for (let i = 0; i < n; i++) {
      const gi = g[i] * scale;
      ref[i] -= h.lr * h.weightDecay * ref[i];
      rm[i] = h.beta1 * rm[i] + (1 - h.beta1) * gi;
      rv[i] = h.beta2 * rv[i] + (1 - h.beta2) * gi * gi;
      const mhat = rm[i] / (1 - h.beta1 ** t);
      const vhat = rv[i] / (1 - h.beta2 ** t);
      ref[i] -= (h.lr * mhat) / (Math.sqrt(vhat) + h.eps);
    }
  }
  for (let i = 0; i < n; i++) {
    close(p[i], ref[i], 1e-6, `param ${i}`);
    close(m[i], rm[i], 1e-6, `m ${i}`);
    close(v[i], rv[i], 1e-6, `v ${i}`);
  }
});

test('AdamW touches only its range', () => {
  const p = new Float32Array([1, 2, 3, 4]);
  const g = new Float32Array([1, 1, 1, 1]);
  const m = new Float32Array(4);
  const v = new Float32Array(4);
  adamwUpdate(p, g, m, v, 1, 2, 1, 1, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.5 });
  assert.equal(p[0], 1);
  assert.equal(p[3], 4);
  assert.deepEqual([m[0], m[3], v[0], v[3]], [0, 0, 0, 0]);
  // First step: update = lr·sign(g) (m̂/√v̂ = 1) after decay 2·(1 − 0.05).
  close(p[1], 2 * 0.95 - 0.1, 1e-6, 'p1');
});

test('LR schedule: warmup, cosine and linear decay to minLrRatio, constant', () => {
  const base = { lr: 1, steps: 110, warmupSteps: 10, minLrRatio: 0.1 };
  const cos = { ...base, schedule: 'cosine' as const };
  const lin = { ...base, schedule: 'linear' as const };
  const cst = { ...base, schedule: 'constant' as const };
  close(learningRate(0, cos), 0.1, 1e-12, 'warmup 0');
  close(learningRate(4, cos), 0.5, 1e-12, 'warmup 4');
  close(learningRate(9, cos), 1.0, 1e-12, 'warmup 9');
  close(learningRate(10, cos), 1.0, 1e-12, 'cos start');
  close(learningRate(60, cos), 0.1 + 0.9 * 0.5, 1e-12, 'cos middle');
  close(learningRate(35, cos), 0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI / 4)), 1e-12, 'cos quarter');
  close(learningRate(110, cos), 0.1, 1e-12, 'cos end');
  close(learningRate(60, lin), 0.1 + 0.9 * 0.5, 1e-12, 'lin middle');
  close(learningRate(85, lin), 0.1 + 0.9 * 0.25, 1e-12, 'lin 3/4');
  close(learningRate(5, cst), 0.6, 1e-12, 'const warmup');
  close(learningRate(100, cst), 1, 1e-12, 'const');
  close(learningRate(0, { ...cos, warmupSteps: 0 }), 1, 1e-12, 'no warmup');
});

test('global-norm clipping', () => {
  const g = new Float32Array([3, 4, 100, 12]);
  close(
    globalNorm(g, [
      [0, 2],
      [3, 1],
    ]),
    13,
    1e-12,
    'norm over ranges',
  );
  close(globalNorm(g, [[0, 2]], 0.5), 2.5, 1e-12, 'scaled norm');
  close(clipCoefficient(13, 1), 1 / (13 + 1e-6), 1e-12, 'clip');
  assert.equal(clipCoefficient(0.5, 1), 1);
  assert.equal(clipCoefficient(1e9, 0), 1);
});
