// sync: gradients' exact sums and their durable encoding (coordinator/sync/gradient-sums.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GradientAggregator, decodeTotal, encodeTotal } from '../../coordinator/sync/gradient-sums.ts';

test('gradient sums: float64 sum in replica order, identical for every arrival order, kept for replay', () => {
  const R = 3;
  const n = 1000;
  const parts = Array.from({ length: R }, (_, r) =>
    Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + r) * 10 ** ((i % 7) - 3)),
  );
  const expected = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let r = 0; r < R; r++) s += parts[r][i];
    expected[i] = s;
  }
  for (const order of [
    [0, 1, 2],
    [2, 0, 1],
    [1, 2, 0],
  ]) {
    const agg = new GradientAggregator(R);
    let out = null;
    for (const r of order)
      out = agg.add(7, { replica: r, sums: new Uint8Array(parts[r].buffer.slice(0)), tokens: 10 + r, lossSum: r });
    assert.ok(out?.fresh);
    assert.deepEqual(new Float32Array(out!.total.sums.buffer), expected);
    assert.equal(out!.total.tokens, 33);
    // A replica replaying step 7 gets the stored total.
    const again = agg.add(7, { replica: 1, sums: new Uint8Array(4 * n), tokens: 0, lossSum: 0 });
    assert.equal(again?.fresh, false);
    assert.deepEqual(new Float32Array(again!.total.sums.buffer), expected);
    agg.forgetThrough(7);
    assert.equal(agg.add(7, { replica: 0, sums: new Uint8Array(4 * n), tokens: 0, lossSum: 0 }), null);
  }
});

test('gradient totals: durable encoding round-trips; durable lookups only when a replay may need them', async () => {
  const sums = Float32Array.from([1.5, -2.25, 3e-8]);
  const t = { step: 4, sums: new Uint8Array(sums.buffer), tokens: 17, lossSum: 3.25 };
  const back = decodeTotal(4, encodeTotal(t));
  assert.deepEqual(new Float32Array(back.sums.buffer, back.sums.byteOffset, 3), sums);
  assert.equal(back.tokens, 17);
  assert.equal(back.lossSum, 3.25);
  const agg = new GradientAggregator(2);
  assert.ok(agg.mayBeDurable(10), 'a fresh coordinator may have lost totals');
  agg.add(10, { replica: 0, sums: new Uint8Array(12), tokens: 1, lossSum: 0 });
  agg.add(10, { replica: 1, sums: new Uint8Array(12), tokens: 1, lossSum: 0 });
  assert.equal(agg.mayBeDurable(11), false, 'the next step is new work, not a replay');
  assert.equal(agg.mayBeDurable(7), true, 'a step before anything computed here');
});
