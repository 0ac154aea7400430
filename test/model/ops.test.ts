// The hand-written gradients of shared/tensor/ops.ts against tfjs's own matMul gradients on the
// same inputs (float32 both: equal up to summation order, so 1e-5 relative).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { bmm, linearRows, linearT, loraDelta, matMul2d, oneHotEmbed } from '../../shared/tensor/ops.ts';

await initEngine('wasm', { quiet: true });

function close(a: tf.Tensor, b: tf.Tensor, what: string) {
  assert.deepEqual(a.shape, b.shape, `${what}: shape`);
  const x = a.dataSync();
  const y = b.dataSync();
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < x.length; i++) {
    scale = Math.max(scale, Math.abs(y[i]));
    diff = Math.max(diff, Math.abs(x[i] - y[i]));
  }
  assert.ok(scale > 0, `${what}: all zero`);
  assert.ok(diff <= 1e-5 * scale, `${what}: max diff ${diff} (scale ${scale})`);
}

// Both backward forms: rows · (in + out) above in · out transposes the weight, below it the activations.
for (const [rows, inF, outF] of [
  [7, 5, 3],
  [2, 6, 5],
]) {
  test(`linearT: value and input gradient equal tf.matMul’s (${rows} rows, ${inF}→${outF})`, () => {
    tf.tidy(() => {
      const x = tf.randomNormal([rows, inF], 0, 1, 'float32', 1) as tf.Tensor2D;
      const wT = tf.randomNormal([inF, outF], 0, 1, 'float32', 2) as tf.Tensor2D;
      const w = tf.randomNormal([rows, outF], 0, 1, 'float32', 3); // weights the output so dy is not all ones
      close(linearT(x, wT), tf.matMul(x, wT), 'value');
      const ours = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(linearT(xx as tf.Tensor2D, wT), w)))(x);
      const theirs = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(tf.matMul(xx as tf.Tensor2D, wT), w)))(x);
      close(ours, theirs, 'dx');
    });
  });
}

test('linearRows: x·wᵀ and its input gradient equal tf.matMul’s with w in HF layout', () => {
  tf.tidy(() => {
    const x = tf.randomNormal([4, 6], 0, 1, 'float32', 1) as tf.Tensor2D;
    const w = tf.randomNormal([9, 6], 0, 1, 'float32', 2) as tf.Tensor2D;
    const r = tf.randomNormal([4, 9], 0, 1, 'float32', 3);
    close(linearRows(x, w), tf.matMul(x, w, false, true), 'value');
    const ours = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(linearRows(xx as tf.Tensor2D, w), r)))(x);
    const theirs = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(tf.matMul(xx as tf.Tensor2D, w, false, true), r)))(x);
    close(ours, theirs, 'dx');
  });
});

test('bmm: value and both gradients equal tf.matMul’s (rank 4)', () => {
  tf.tidy(() => {
    const a = tf.randomNormal([2, 3, 4, 5], 0, 1, 'float32', 4);
    const b = tf.randomNormal([2, 3, 5, 6], 0, 1, 'float32', 5);
    const w = tf.randomNormal([2, 3, 4, 6], 0, 1, 'float32', 6);
    close(bmm(a, b), tf.matMul(a, b), 'value');
    const ours = tf.grads((aa: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(bmm(aa, bb), w)))([a, b]);
    const theirs = tf.grads((aa: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(tf.matMul(aa, bb), w)))([a, b]);
    close(ours[0], theirs[0], 'da');
    close(ours[1], theirs[1], 'db');
  });
});

test('bmm with transposeB: a·bᵀ and both gradients equal tf.matMul’s (rank 4)', () => {
  tf.tidy(() => {
    const a = tf.randomNormal([2, 3, 4, 5], 0, 1, 'float32', 4);
    const b = tf.randomNormal([2, 3, 6, 5], 0, 1, 'float32', 5);
    const w = tf.randomNormal([2, 3, 4, 6], 0, 1, 'float32', 6);
    close(bmm(a, b, true), tf.matMul(a, b, false, true), 'value');
    const ours = tf.grads((aa: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(bmm(aa, bb, true), w)))([a, b]);
    const theirs = tf.grads((aa: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(tf.matMul(aa, bb, false, true), w)))([
      a,
      b,
    ]);
    close(ours[0], theirs[0], 'da');
    close(ours[1], theirs[1], 'db');
  });
});

test('loraDelta: value and gradients for x, A and B equal the stock composition', () => {
  tf.tidy(() => {
    const x = tf.randomNormal([9, 6], 0, 1, 'float32', 7) as tf.Tensor2D;
    const A = tf.randomNormal([2, 6], 0, 1, 'float32', 8) as tf.Tensor2D;
    const B = tf.randomNormal([4, 2], 0, 1, 'float32', 9) as tf.Tensor2D;
    const w = tf.randomNormal([9, 4], 0, 1, 'float32', 10);
    const stock = (xx: tf.Tensor, aa: tf.Tensor, bb: tf.Tensor) =>
      tf.mul(
        tf.matMul(tf.matMul(xx as tf.Tensor2D, aa as tf.Tensor2D, false, true), bb as tf.Tensor2D, false, true),
        1.5,
      );
    close(loraDelta(x, A, B, 1.5), stock(x, A, B), 'value');
    const ours = tf.grads((xx: tf.Tensor, aa: tf.Tensor, bb: tf.Tensor) =>
      tf.sum(tf.mul(loraDelta(xx as tf.Tensor2D, aa as tf.Tensor2D, bb as tf.Tensor2D, 1.5), w)),
    )([x, A, B]);
    const theirs = tf.grads((xx: tf.Tensor, aa: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(stock(xx, aa, bb), w)))([
      x,
      A,
      B,
    ]);
    ['dx', 'dA', 'dB'].forEach((name, i) => close(ours[i], theirs[i], name));
  });
});

test('matMul2d: value and both gradients equal tf.matMul’s', () => {
  tf.tidy(() => {
    const a = tf.randomNormal([7, 5], 0, 1, 'float32', 11) as tf.Tensor2D;
    const b = tf.randomNormal([5, 3], 0, 1, 'float32', 12) as tf.Tensor2D;
    const w = tf.randomNormal([7, 3], 0, 1, 'float32', 13);
    close(matMul2d(a, b), tf.matMul(a, b), 'value');
    const ours = tf.grads((aa: tf.Tensor, bb: tf.Tensor) =>
      tf.sum(tf.mul(matMul2d(aa as tf.Tensor2D, bb as tf.Tensor2D), w)),
    )([a, b]);
    const theirs = tf.grads((aa: tf.Tensor, bb: tf.Tensor) =>
      tf.sum(tf.mul(tf.matMul(aa as tf.Tensor2D, bb as tf.Tensor2D), w)),
    )([a, b]);
    close(ours[0], theirs[0], 'da');
    close(ours[1], theirs[1], 'db');
  });
});

test('oneHotEmbed: the rows of tf.gather, and the table gradient sums dy into each id’s row', () => {
  tf.tidy(() => {
    const table = tf.randomNormal([6, 4], 0, 1, 'float32', 14) as tf.Tensor2D;
    const ids = tf.tensor1d([3, 0, 3, 5], 'int32');
    const w = tf.randomNormal([4, 4], 0, 1, 'float32', 15);
    close(oneHotEmbed(ids, table), tf.gather(table, ids), 'value');
    const got = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(oneHotEmbed(ids, t as tf.Tensor2D), w)))(table);
    const wRows = w.arraySync() as number[][];
    const expected = Array.from({ length: 6 }, (_, v) =>
      [0, 1, 2, 3].map((c) => [3, 0, 3, 5].reduce((acc, id, n) => acc + (id === v ? wRows[n][c] : 0), 0)),
    );
    close(got, tf.tensor2d(expected), 'dTable');
  });
});
