// The retry policy's bookkeeping (coordinator/retries.ts) with explicit clocks: backoff of a shard
// that keeps losing workers before a step, the flapping detector that names a worker, and the
// no-progress limit. (The policy on a live cluster: test/cluster/churn.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_RETRIES, RetryPolicy } from '../../coordinator/retries.ts';

const opts = { ...DEFAULT_RETRIES, backoffBaseMs: 100, backoffCapMs: 400, flapLimit: 3, quarantineMs: 1000 };

test('the first loss is re-placed at once; later losses without a step back off, up to the cap', () => {
  const r = new RetryPolicy(opts);
  const waits: number[] = [];
  for (let i = 0; i < 5; i++) {
    r.placed('j', 's', 0);
    r.workerLost('s', `w${i}`, 0);
    waits.push(r.nextReadyMs(-1) ?? 0);
  }
  assert.deepEqual(waits, [0, 100, 200, 400, 400]);
  assert.equal(r.ready('s', 399), false);
  assert.equal(r.ready('s', 400), true);
  // A step resets the streak: the next loss is re-placed at once again.
  r.placed('j', 's', 500);
  r.progressed('j', 's', 'w9', 600);
  r.workerLost('s', 'w9', 700);
  assert.equal(r.ready('s', 700), true);
});

test('a worker that loses shards before they take a step is named flapping and quarantined', () => {
  const r = new RetryPolicy(opts);
  const lose = (shard: string, now: number) => {
    r.placed('j', shard, now);
    return r.workerLost(shard, 'bad', now);
  };
  assert.equal(lose('a', 0), null);
  assert.equal(lose('b', 10), null);
  assert.equal(lose('a', 20), 'bad');
  assert.ok(r.isQuarantined('bad', 500));
  assert.deepEqual(r.quarantinedNames(500), ['bad']);
  assert.equal(r.isQuarantined('bad', 1021), false);
  // Losses of shards that moved on the worker do not count: a busy worker that dies is not flapping.
  for (let i = 0; i < 5; i++) {
    r.placed('j', 'c', 2000 + i);
    r.progressed('j', 'c', 'good', 2000 + i);
    assert.equal(r.workerLost('c', 'good', 2000 + i), null);
  }
});

test('the no-progress limit applies only to a job whose shards are losing workers', () => {
  const r = new RetryPolicy({ ...opts, noProgressMs: 1000 });
  r.placed('j', 'a', 0);
  r.placed('j', 'b', 0);
  assert.equal(r.stalledFor('j', ['a', 'b'], 5000), null, 'a slow job without losses is not stalled');
  r.workerLost('a', 'w', 5000);
  assert.equal(r.stalledFor('j', ['a', 'b'], 5000), 5000);
  r.progressed('j', 'a', 'w2', 5500);
  assert.equal(r.stalledFor('j', ['a', 'b'], 6000), null);
});
