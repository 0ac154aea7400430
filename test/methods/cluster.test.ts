// The training methods in a cluster job: the spec travels to the workers in its wire form, and two
// gradient-synced replicas on separate worker processes draw the same dropout samples, prune the same
// entries and train the same rank groups (R-Drop's two passes use the same per-sample seeds as
// dropout_samples, so they are covered by the same agreement) — the result equals, bit for bit, the same replicas in one
// process (test/cluster/reference.ts), and the pruned entries are zero in the downloaded PEFT files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import * as h from '../cluster/helpers.ts';
import { bitDifferences, gradientSyncReference } from '../cluster/reference.ts';

const prefix = h.uniquePrefix();
const dir = h.tmp();
let coord: Awaited<ReturnType<typeof h.startCoordinator>>;
let workers: h.Proc[] = [];

before(async () => {
  await h.writeTinyModel(join(dir, 'model'));
  h.writeMaskedTaskData(join(dir, 'a.jsonl'), 22, 5, 12, 4);
  coord = await h.startCoordinator(prefix);
  workers = [h.startWorker(coord.address, 'm1'), h.startWorker(coord.address, 'm2')];
});

after(async () => {
  await h.stopAll([...workers, coord]);
  await h.cleanNats(prefix);
});

test('split + sparsity + dropout samples + CoTo: 2 synced replicas ≡ one process, bit for bit', async () => {
  const c = h.client(coord.address);
  const data = { train: join(dir, 'a.jsonl') };
  const spec = h.jobSpec(dir, {
    training: { steps: 6, batch_size: 4, seq_len: 8, lr: 0.02, warmup_steps: 0, eval_every: 0, checkpoint_every: 3 },
    lora: { r: 4, alpha: 8, dropout: 0.2, target_modules: ['q_proj', 'v_proj'] },
    tasks: [
      {
        name: 'masks',
        data,
        replicas: 2,
        coto: { enabled: true },
        lora: { dropout_samples: 2, sparsity: { ratio: 0.5, criterion: 'snip' }, split: { groups: 2, active: 1 } },
      },
    ],
    sync: { mode: 'gradients' },
  });
  try {
    await h.waitWorkers(c, 2);
    const id = await c.submit(spec);
    const job = await h.withDeadline(c.wait(id), 300_000, 'the job to finish', [coord, ...workers]);
    assert.equal(job.state, 'succeeded', job.reason);
    await c.downloadResult(id, join(dir, 'out'));
  } finally {
    c.close();
  }
  const got = await readPeftAdapter(join(dir, 'out', 'masks'));
  const ref = await gradientSyncReference(spec, 'masks');
  assert.deepEqual(bitDifferences(got, ref.adapter), []);
  for (const [path, m] of got.modules) {
    const zeros = m.a.reduce((n, v) => n + (v === 0 ? 1 : 0), 0);
    assert.ok(zeros >= Math.round(0.5 * m.a.length), `${path}: ${zeros} zeros in A`);
  }
});
