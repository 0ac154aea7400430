// Merge threads: the same adapter bit for bit whatever the thread count, progress in module order,
// errors that keep their message, and a calling thread whose event loop stays free while modules merge.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import {
  closeMergeThreads,
  extractAdapter,
  mergeAdapters,
  reconcileReplicas,
  type NamedTensor,
} from '../../shared/merge/index.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';
import { runModuleJobs } from '../../shared/merge/parallel.ts';
import { randomAdapter, rng, type Spec } from './helpers.ts';

after(closeMergeThreads);

const shapes: Spec['shapes'] = {};
for (let l = 0; l < 3; l++) {
  shapes[`model.layers.${l}.self_attn.q_proj`] = [96, 64];
  shapes[`model.layers.${l}.self_attn.v_proj`] = [32, 64];
}
const spec: Spec = { shapes, rank: 4, alpha: 8 };
const adapters = [randomAdapter(spec, 1), randomAdapter(spec, 2), randomAdapter(spec, 3)];

function assertSameAdapter(a: LoraAdapter, b: LoraAdapter) {
  assert.deepEqual(a.config, b.config);
  assert.deepEqual([...a.modules.keys()], [...b.modules.keys()]);
  for (const [name, m] of a.modules) assert.deepEqual(m, b.modules.get(name), name);
}

test('threads: 3 gives the adapter of threads: 1, bit for bit, with progress in module order', async () => {
  for (const options of [
    { method: 'ties' as const, density: 0.5, weights: [1, 0.5, 0.8] },
    { method: 'svd' as const, rank: 3 },
    { method: 'dare_linear' as const, density: 0.7, seed: 4 },
  ]) {
    const order: number[] = [];
    const one = await mergeAdapters(adapters, { ...options, threads: 1 });
    const three = await mergeAdapters(adapters, { ...options, threads: 3, onModule: (_, i) => order.push(i) });
    assertSameAdapter(three.adapter, one.adapter);
    assert.deepEqual(three.modules, one.modules);
    assert.deepEqual(
      order,
      Object.keys(shapes).map((_, i) => i),
    );
  }
  const reps = [adapters[0], adapters[1]];
  assertSameAdapter(
    (await reconcileReplicas(reps, { threads: 2 })).adapter,
    (await reconcileReplicas(reps, { threads: 1 })).adapter,
  );
});

test('extraction in threads equals extraction here; the caller keeps its tensors', async () => {
  const g = rng(9);
  const base = new Map<string, NamedTensor>();
  const tuned = new Map<string, NamedTensor>();
  for (const [name, [m, n]] of Object.entries(shapes)) {
    const b = Float32Array.from({ length: m * n }, () => g.normal());
    base.set(`${name}.weight`, { shape: [m, n], data: b });
    tuned.set(`${name}.weight`, { shape: [m, n], data: Float32Array.from(b, (x) => x + 0.01 * g.normal()) });
  }
  const here = await extractAdapter(base, tuned, { rank: 3, threads: 1 });
  const there = await extractAdapter(base, tuned, { rank: 3, threads: 2 });
  assertSameAdapter(there.adapter, here.adapter);
  for (const t of base.values()) assert.equal(t.data.length, t.shape[0] * t.shape[1]);
});

test('an error in a merge thread arrives with its message: the first failing module in module order, whichever thread ends first', async () => {
  // Every module fails here (ranks 4 and 2), so each of the two threads fails its first module and
  // they race; the error must still name module 0, every time.
  const other = randomAdapter({ ...spec, rank: 2 }, 7);
  for (let attempt = 0; attempt < 12; attempt++) {
    await assert.rejects(
      mergeAdapters([adapters[0], other], { method: 'ties', density: 0.5, space: 'factors', threads: 2 }),
      /method ties in factors space needs equal ranks: module model\.layers\.0\.self_attn\.q_proj has rank 4/,
    );
  }
});

test('when inputs fail to load, the lowest module index is reported, not the first failure in time', async () => {
  // Module 0's input fails late, module 1's at once (as a truncated file read would): the error is
  // module 0's, as with one thread.
  const jobAt = async (i: number): Promise<never> => {
    await new Promise((r) => setTimeout(r, i === 0 ? 300 : 0));
    throw new Error(`module ${i} could not be read`);
  };
  await assert.rejects(
    runModuleJobs(2, jobAt, 1, () => undefined),
    /module 0 could not be read/,
  );
  await assert.rejects(
    runModuleJobs(2, jobAt, 2, () => undefined),
    /module 0 could not be read/,
  );
});

test('the calling thread stays free while a round reconciles in merge threads', async () => {
  // Big enough that the work, not the messages, dominates: 8 modules of 768×768, 4 replicas of rank 16.
  const big: Spec = { shapes: {}, rank: 16, alpha: 32 };
  for (let l = 0; l < 4; l++) {
    big.shapes[`model.layers.${l}.self_attn.q_proj`] = [768, 768];
    big.shapes[`model.layers.${l}.self_attn.v_proj`] = [768, 768];
  }
  const reps = [1, 2, 3, 4].map((s) => randomAdapter(big, 100 + s));
  await reconcileReplicas(reps.slice(0, 2), { threads: 2 }); // threads started, engines loaded
  const before = performance.eventLoopUtilization();
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  await reconcileReplicas(reps, { threads: 2 });
  clearInterval(timer);
  const elu = performance.eventLoopUtilization(before);
  // Run here (threads: 1) the loop is busy nearly all the time; in threads it mostly waits.
  assert.ok(elu.utilization < 0.5, `event loop utilisation ${elu.utilization.toFixed(2)} while reconciling`);
  assert.ok(ticks > 0, 'no timer fired while the round reconciled');
});
