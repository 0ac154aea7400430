// `npm run bench -- disentangle [--seeds N] [--steps N] [--draws N] [--out DIR]`: does orthogonal Monte
// Carlo dropout merging (merge.method orthogonal_dropout) disentangle what two task adapters learned?
// Two plain-LoRA task adapters (revup, rotup: the coto bench's tasks and settings, so the same adapters
// as its `lora` arm) are merged per seed by the average (linear, ½·ΔW each) and by orthogonal dropout
// with the same expectation (weights ½, several mask draws), and by their sums (task arithmetic with
// weights 1, orthogonal dropout with weights 1). On each task's held-out prompts we count answers
// that follow the task's own rule (exact match) and answers that follow the OTHER task's rule
// (leakage: the other adapter's behaviour on this task's prompt), and answers that only upper-case
// the input (the part both rules share, neither re-ordering). Orthogonality is measured too: the
// cosine between the two adapters' weighted contributions to each merged ΔW, averaged over modules
// (0 by construction for orthogonal dropout). Disentanglement would show as own-rule answers kept and
// no leakage; the paper reports that orthogonality does not buy it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { initEngine } from '../shared/tensor/engine.ts';
import { loadBaseModel } from '../shared/train/load.ts';
import { LoraRuntime } from '../shared/lora/runtime.ts';
import type { LoraAdapter, LoraModule } from '../shared/lora/types.ts';
import { closeMergeThreads, mergeAdapters, type MergeOptions } from '../shared/merge/index.ts';
import { nameHash } from '../shared/merge/options.ts';
import { orthogonalPartition } from '../shared/merge/orthogonal.ts';
import { deriveSeed } from '../shared/tensor/random.ts';
import { ByteTokenizer } from '../shared/data/tokenizer.ts';
import { scoreGeneration } from '../shared/eval/score.ts';
import { MAX_LEN, inputOf } from '../demo/tasks.ts';
import { BENCH_OPS, makeTasks, type BenchTask } from './coto/tasks.ts';
import { ARMS } from './coto/arms.ts';
import { trainAdapter } from './coto/train.ts';

const { values: a } = parseArgs({
  options: {
    seeds: { type: 'string', default: '2' },
    steps: { type: 'string', default: '40' },
    draws: { type: 'string', default: '3' },
    eval: { type: 'string', default: '40' },
    out: { type: 'string', default: 'runs/bench-disentangle' },
    backend: { type: 'string', default: 'wasm' },
  },
});
const log = (s: string) => process.stderr.write(`${s}\n`);
await initEngine(a.backend, { quiet: true });
const model = await loadBaseModel(new URL('../demo/base', import.meta.url).pathname);
const names = ['revup', 'rotup'];
const tasks = makeTasks({ train: 2000, eval: Number(a.eval), seed: 11 }).filter((t) => names.includes(t.name));
const settings = { steps: Number(a.steps), batchSize: 16, lr: 0.005, rank: 8 };
const lora = ARMS.find((x) => x.name === 'lora')!;
const bytes = new ByteTokenizer(256);

/** Own-rule and other-rule answer rates of an adapter on a task's prompts (examples where the rules agree are left out). */
function answers(task: BenchTask, other: BenchTask, adapter: LoraAdapter | null) {
  const otherOp = BENCH_OPS.find((o) => o.name === other.name)!;
  const thisOp = BENCH_OPS.find((o) => o.name === task.name)!;
  const items = task.eval
    .filter((e) => thisOp.apply(inputOf(e)) !== otherOp.apply(inputOf(e)))
    .map((e) => ({ prompt: bytes.encode(e.prompt), reference: e.completion, input: inputOf(e) }));
  const rt = adapter ? LoraRuntime.fromAdapter(model, adapter) : undefined;
  try {
    const g = scoreGeneration(model, items, { tokenizer: bytes, maxNewTokens: MAX_LEN + 1, stop: ['\n'], lora: rt });
    const own = g.outputs.filter((o) => o.exact).length / items.length;
    const leak = g.outputs.filter((o, i) => o.prediction === otherOp.apply(items[i].input)).length / items.length;
    // The part both rules share (upper-casing) without either re-ordering: the input copied in capitals.
    const shared = g.outputs.filter((o, i) => o.prediction === items[i].input.toUpperCase()).length / items.length;
    return { own, leak, shared };
  } finally {
    rt?.dispose();
  }
}

function dense(m: LoraModule, coef: number, rows?: (o: number) => boolean): Float64Array {
  const out = new Float64Array(m.outFeatures * m.inFeatures);
  for (let o = 0; o < m.outFeatures; o++) {
    if (rows && !rows(o)) continue;
    for (let j = 0; j < m.rank; j++) {
      const b = coef * m.scaling * m.b[o * m.rank + j];
      if (b === 0) continue;
      for (let i = 0; i < m.inFeatures; i++) out[o * m.inFeatures + i] += b * m.a[j * m.inFeatures + i];
    }
  }
  return out;
}

/** Mean over modules of |cos| between the two adapters' contributions to the merge. */
function contributionCosine(x: LoraAdapter, y: LoraAdapter, orthogonalSeed: number | null): number {
  let sum = 0;
  for (const [path, mx] of x.modules) {
    const my = y.modules.get(path)!;
    const owner =
      orthogonalSeed === null
        ? null
        : orthogonalPartition(mx.outFeatures, 2, deriveSeed(orthogonalSeed, nameHash(path), 0x0d));
    const dx = dense(mx, 1, owner ? (o) => owner[o] === 0 : undefined);
    const dy = dense(my, 1, owner ? (o) => owner[o] === 1 : undefined);
    let xy = 0;
    let xx = 0;
    let yy = 0;
    for (let i = 0; i < dx.length; i++) {
      xy += dx[i] * dy[i];
      xx += dx[i] * dx[i];
      yy += dy[i] * dy[i];
    }
    sum += Math.abs(xy) / Math.sqrt(xx * yy || 1);
  }
  return sum / x.modules.size;
}

interface Row {
  merge: string;
  own: number[];
  leak: number[];
  shared: number[];
  cosine: number[];
}
const rows = new Map<string, Row>();
const record = (merge: string, own: number, leak: number, shared: number, cosine: number) => {
  const r = rows.get(merge) ?? { merge, own: [], leak: [], shared: [], cosine: [] };
  r.own.push(own);
  r.leak.push(leak);
  r.shared.push(shared);
  r.cosine.push(cosine);
  rows.set(merge, r);
};

const seeds = Array.from({ length: Number(a.seeds) }, (_, i) => 1000 + i);
for (const seed of seeds) {
  const [ra, rb] = tasks.map((t) => {
    const r = trainAdapter(model, t, lora, settings, seed);
    log(`  trained ${t.name} seed ${seed}: ${r.seconds.toFixed(1)} s, final loss ${r.finalLoss.toFixed(3)}`);
    return r.adapter;
  });
  const pair = [ra, rb];
  const score = async (label: string, adapter: LoraAdapter | null, cosine: number, perTask?: LoraAdapter[]) => {
    for (const [k, t] of tasks.entries()) {
      const r = answers(t, tasks[1 - k], perTask ? perTask[k] : adapter);
      record(label, r.own, r.leak, r.shared, cosine);
    }
  };
  await score('base model (no adapter)', null, NaN);
  await score('own task adapter alone', null, NaN, pair);
  const merge = async (o: MergeOptions) => (await mergeAdapters(pair, o)).adapter;
  const cosLinear = contributionCosine(ra, rb, null);
  await score('linear (½ ΔW each)', await merge({ method: 'linear', weights: [0.5, 0.5] }), cosLinear);
  await score('task arithmetic (Σ ΔW)', await merge({ method: 'task_arithmetic', weights: [1, 1] }), cosLinear);
  for (let d = 0; d < Number(a.draws); d++) {
    const cos = contributionCosine(ra, rb, d);
    await score(
      'orthogonal dropout, weights ½',
      await merge({ method: 'orthogonal_dropout', weights: [0.5, 0.5], seed: d }),
      cos,
    );
    await score(
      'orthogonal dropout, weights 1',
      await merge({ method: 'orthogonal_dropout', weights: [1, 1], seed: d }),
      cos,
    );
  }
  log(`  seed ${seed} scored`);
}
await closeMergeThreads();

const mean = (v: number[]) => {
  const f = v.filter(Number.isFinite);
  return f.length === 0 ? NaN : f.reduce((s, x) => s + x, 0) / f.length;
};
const pct = (v: number[]) => `${(100 * mean(v)).toFixed(1)} %`;
const lines = [
  `| merge of revup + rotup (plain LoRA, ${settings.steps} steps, ${seeds.length} seeds) | own-rule answers | other task's rule (leakage) | only the shared part (input in capitals) | mean |cos| of the two contributions |`,
  '|---|---|---|---|---|',
  ...[...rows.values()].map(
    (r) =>
      `| ${r.merge} | ${pct(r.own)} | ${pct(r.leak)} | ${pct(r.shared)} | ${Number.isFinite(mean(r.cosine)) ? mean(r.cosine).toFixed(3) : '—'} |`,
  ),
];
const out = resolve(a.out!);
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'table.md'), lines.join('\n') + '\n');
writeFileSync(join(out, 'results.json'), JSON.stringify({ settings, seeds, rows: [...rows.values()] }, null, 2));
console.log(lines.join('\n'));
