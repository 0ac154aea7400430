// Gang admission and spreading (coordinator/placement.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { placeShards } from '../../coordinator/placement.ts';

test('gang admission: a job starts only when all its shards fit; running jobs refill first; spread over workers', () => {
  const free = [
    { workerId: 'w1', device: 'cpu:0' },
    { workerId: 'w1', device: 'cpu:1' },
    { workerId: 'w2', device: 'cpu:0' },
  ];
  const r = placeShards(
    [
      { id: 'big', state: 'queued', pendingShards: ['b0', 'b1', 'b2', 'b3'] },
      { id: 'small', state: 'queued', pendingShards: ['s0', 's1'] },
    ],
    free,
  );
  assert.deepEqual(
    r.placements.map((p) => p.shardId),
    ['s0', 's1'],
  );
  assert.deepEqual(
    r.placements.map((p) => p.workerId),
    ['w1', 'w2'],
    'round-robin over workers',
  );
  assert.match(r.waiting.get('big')!, /needs 4, 3 free/);
  const r2 = placeShards(
    [
      { id: 'q', state: 'queued', pendingShards: ['q0', 'q1', 'q2'] },
      { id: 'run', state: 'running', pendingShards: ['m0'] },
    ],
    free,
  );
  assert.deepEqual(
    r2.placements.map((p) => p.shardId),
    ['m0'],
    'the moved shard first; the 3-shard gang no longer fits',
  );
});
