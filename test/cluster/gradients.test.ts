// sync: gradients — R replicas on separate worker processes exchange gradient sums every optimiser
// step; the result must equal, bit for bit, R trainers in one process whose sums are added in
// float64 (test/cluster/reference.ts). The data has variable lengths and prompt masks, so the
// replicas' token counts differ (Σ sums / Σ tokens ≠ a mean of replica means), each replica's shard
// holds several batches and the 24 steps cross epochs (data order and the resume cursor matter).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import { objectNames } from '../../shared/nats/subjects.ts';
import * as h from './helpers.ts';
import { bitDifferences, gradientSyncReference } from './reference.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
let workers: h.Proc[] = [];

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeMaskedTaskData(join(dir, 'a.jsonl'), 22, 5, 12, 4);
  coord = await h.startCoordinator(prefix);
  workers = [h.startWorker(coord.address, 'g1'), h.startWorker(coord.address, 'g2')];
});

after(async () => {
  await h.stopAll([...workers, coord]);
  await h.cleanNats(prefix);
});

const training = { ...h.smallTraining(24, 5), lr: 0.02, max_grad_norm: 1.0, weight_decay: 0.01 };

test('2 gradient-synced replicas ≡ the same replicas in one process, bit for bit', async () => {
  const c = h.client(coord.address);
  const spec = h.jobSpec(dir, {
    training,
    tasks: [{ name: 'a', data: { train: join(dir, 'a.jsonl') }, replicas: 2 }],
    sync: { mode: 'gradients' },
  });
  let clusterAdapter;
  let replicaBytes: Buffer[];
  try {
    await h.waitWorkers(c, 2);
    const id = await c.submit(spec);
    const job = await h.withDeadline(c.wait(id), 120_000, 'the job to finish', [coord, ...workers]);
    assert.equal(job.state, 'succeeded', job.reason);
    assert.notEqual(job.shards[0].workerId, job.shards[1].workerId, 'replicas ran in different processes');
    await c.downloadResult(id, join(dir, 'out'));
    clusterAdapter = await readPeftAdapter(join(dir, 'out', 'a'));
    replicaBytes = await Promise.all([0, 1].map((r) => c.downloadBlob(objectNames.shardFinal(id, 'a', r))));
  } finally {
    c.close();
  }
  // The two replicas applied identical summed gradients: their adapters are bit-identical.
  assert.equal(Buffer.compare(replicaBytes[0], replicaBytes[1]), 0);

  const ref = await gradientSyncReference(spec, 'a');
  // The test data is what it claims: the replicas' token counts differ, and every replica runs
  // more than one distinct batch per epoch.
  assert.ok(
    ref.tokens.some(([x, y]) => x !== y),
    'replicas should see different token counts',
  );
  assert.ok(new Set(ref.tokens.map((t) => t.join())).size > 3, 'batches should differ from step to step');
  assert.deepEqual(bitDifferences(clusterAdapter, ref.adapter), []);
  const b = [...ref.adapter.modules.values()].reduce((s, m) => s + m.b.reduce((t, x) => t + Math.abs(x), 0), 0);
  assert.ok(b > 1e-3, 'the run trained something');
});
