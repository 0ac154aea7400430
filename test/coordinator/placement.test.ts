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

test('memory: each shard goes to a device that fits it; a job no live device fits waits with the refusal', () => {
  const free = [
    { workerId: 'w1', device: 'cpu:0' },
    { workerId: 'w2', device: 'gpu:0' },
  ];
  // Shard "x1" of the big task fits only the GPU; "x0" of the small one anywhere.
  const unfit = (shardId: string, d: { device: string }) =>
    shardId === 'x1' && d.device !== 'gpu:0' ? `needs 9 GiB, over ${d.device}'s 4 GiB` : null;
  const r = placeShards([{ id: 'x', state: 'queued', pendingShards: ['x1', 'x0'], unfit }], free);
  assert.deepEqual(
    r.placements.map((p) => [p.shardId, p.device]),
    [
      ['x1', 'gpu:0'],
      ['x0', 'cpu:0'],
    ],
  );
  // The GPU is busy: the gang waits for devices that fit (the GPU exists), without taking the CPU.
  const busy = placeShards([{ id: 'x', state: 'queued', pendingShards: ['x1', 'x0'], unfit }], [free[0]], free);
  assert.deepEqual(busy.placements, []);
  assert.match(busy.waiting.get('x')!, /waiting for devices that fit: needs 2, 1 free/);
  // No live worker has a device that fits: the reason says so, with the plan's words.
  const none = placeShards([{ id: 'x', state: 'queued', pendingShards: ['x1'], unfit }], [free[0]]);
  assert.match(none.waiting.get('x')!, /no device fits shard x1: needs 9 GiB, over cpu:0's 4 GiB/);
  // A running job's lost shard is re-placed only where it fits.
  const moved = placeShards([{ id: 'x', state: 'running', pendingShards: ['x1'], unfit }], [free[0]], free);
  assert.deepEqual(moved.placements, []);
});
