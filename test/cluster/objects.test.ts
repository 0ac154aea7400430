// Objects announced by name and SHA-256 (adapter.ready, shard finished) are merged only when the
// store holds exactly those bytes. Real NATS JetStream object store, real merge thread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NatsStore } from '../../coordinator/nats-store.ts';
import { sha256Hex } from '../../shared/digest.ts';
import { reconcileRound } from '../../coordinator/sync/rounds.ts';
import { closeMergePool } from '../../coordinator/merge/pool.ts';
import { adapterFromObjectBytes, adapterToObjectBytes } from '../../shared/formats/peft.ts';
import { cleanNats, NATS_URL } from './helpers.ts';

const adapter = (b: number[]) => ({
  config: { r: 1, loraAlpha: 1, targetModules: ['q_proj'], loraDropout: 0, useRslora: false },
  modules: new Map([
    [
      'model.layers.0.self_attn.q_proj',
      { a: Float32Array.from([1, 0]), b: Float32Array.from(b), rank: 1, inFeatures: 2, outFeatures: 2, scaling: 1 },
    ],
  ]),
});

test('a round merges only the bytes each adapter.ready announced (SHA-256 checked)', async () => {
  const prefix = `objtest${process.pid}`;
  const store = await NatsStore.open({ url: NATS_URL, prefix });
  try {
    const job = 'j1';
    const r0 = await store.putObject('jobs/j1/r0', adapterToObjectBytes(adapter([2, 0])));
    const r1 = await store.putObject('jobs/j1/r1', adapterToObjectBytes(adapter([4, 0])));
    await assert.rejects(
      reconcileRound(
        store,
        job,
        't',
        1,
        [
          { object: r0.name, sha256: r0.sha256 },
          { object: r1.name, sha256: sha256Hex(new Uint8Array([1])) },
        ],
        'mean',
      ),
      /jobs\/j1\/r1 has SHA-256 [0-9a-f]{64} but the worker announced/,
    );
    const merged = await reconcileRound(
      store,
      job,
      't',
      1,
      [
        { object: r0.name, sha256: r0.sha256 },
        { object: r1.name, sha256: r1.sha256 },
      ],
      'mean',
    );
    const m = adapterFromObjectBytes((await store.getObject(merged.name))!, merged.name).modules.get(
      'model.layers.0.self_attn.q_proj',
    )!;
    // ΔW mean of B=[2,0]·A=[1,0] and B=[4,0]·A=[1,0] is [[3,0],[0,0]].
    const dw00 = m.scaling * m.b[0] * m.a[0];
    assert.ok(Math.abs(dw00 - 3) < 1e-5, `merged ΔW[0,0] = ${dw00}`);
  } finally {
    await store.close();
    await closeMergePool();
    await cleanNats(prefix);
  }
});
