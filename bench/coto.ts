// `npm run bench -- coto [--quick] [--seeds N] [--steps N] [--train N] [--eval N] [--arms coto,lora] [--tasks a,b]
//  [--probes single,…] [--out DIR]`: the CoTo paper's probes at this project's scale.
// Tasks: four held-out string compositions on the committed demo base (bench/coto/tasks.ts). Arms:
// CoTo with the paper's scheduler and plain LoRA, the same steps, learning rate, data and seeds
// (bench/coto/arms.ts; issue 12's methods are added there). Every (task, arm, seed) adapter is
// trained in this process with the shared trainer, then every probe (bench/coto/probes.ts) runs on
// them. Prints the table (mean ± 95 % CI over seeds, the paired difference against plain LoRA, the
// paper's figures beside) and writes table.md, results.json (every raw score), lmc.svg and
// pruning.svg to --out (default runs/bench-coto). Each trained adapter is kept under
// <out>/adapters/<task>/<arm>/<seed>/ with its training figures; a rerun with the same --out and
// settings reuses them (delete the folder to retrain). --quick: 2 seeds, 40 steps, 40 eval examples,
// arms coto and lora unless --arms is given.
// --cluster [--cluster-tasks 1] [--cluster-seeds 2]: also trains that many tasks × arms × seeds as
// one job on a throwaway local cluster and reports max |cluster − local| per adapter, with the
// coordinator's per-layer activation counts and Shapley values (bench/coto/cluster.ts).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { initEngine, activeBackend } from '../shared/tensor/engine.ts';
import { loadBaseModel } from '../shared/train/load.ts';
import { closeMergeThreads } from '../shared/merge/index.ts';
import { greedyExactMatch } from '../demo/score.ts';
import { findArms } from './coto/arms.ts';
import { Lab } from './coto/lab.ts';
import { keepEvery, lmcCurves, PROBES, shapleyByArm } from './coto/probes.ts';
import { lmcSvg, pruningSvg, table, type ProbeOutcome } from './coto/report.ts';
import { makeTasks } from './coto/tasks.ts';
import { trainAdapter, trainedOrCached, type TrainSettings } from './coto/train.ts';
import { clusterCheck, type ClusterCheck } from './coto/cluster.ts';

const { values: a } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    seeds: { type: 'string' },
    steps: { type: 'string' },
    train: { type: 'string' },
    eval: { type: 'string' },
    lr: { type: 'string' },
    arms: { type: 'string' },
    probes: { type: 'string' },
    tasks: { type: 'string' },
    out: { type: 'string', default: 'runs/bench-coto' },
    backend: { type: 'string', default: 'wasm' },
    cluster: { type: 'boolean', default: false },
    'cluster-tasks': { type: 'string', default: '1' },
    'cluster-seeds': { type: 'string', default: '2' },
  },
});
const num = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
const seedCount = num(a.seeds, a.quick ? 2 : 5);
const settings: TrainSettings = {
  steps: num(a.steps, a.quick ? 40 : 60),
  batchSize: 16,
  lr: num(a.lr, 0.005),
  rank: 8,
};
const data = { train: num(a.train, 2000), eval: num(a.eval, a.quick ? 40 : 100), seed: 11 };
// --quick checks that the bench runs end to end: the issue's two arms unless --arms names others.
const arms = findArms(a.arms?.split(',') ?? (a.quick ? ['coto', 'lora'] : undefined));
const probes = a.probes ? PROBES.filter((p) => a.probes!.split(',').includes(p.name)) : PROBES;
const out = resolve(a.out!);
mkdirSync(out, { recursive: true });
const log = (line: string) => process.stderr.write(`${line}\n`);

await initEngine(a.backend, { quiet: true });
const model = await loadBaseModel(new URL('../demo/base', import.meta.url).pathname);
const allTasks = makeTasks(data);
// --tasks revup,rotup: a subset (the multi-task merges then merge that many adapters).
const tasks = a.tasks ? allTasks.filter((t) => a.tasks!.split(',').includes(t.name)) : allTasks;
if (tasks.length === 0)
  throw new Error(`--tasks: none of ${a.tasks} (known: ${allTasks.map((t) => t.name).join(', ')})`);
const seeds = Array.from({ length: seedCount }, (_, i) => 1000 + i);
const lab = new Lab(model, tasks, arms, seeds, log);
const started = new Date();
const t0 = performance.now();
log(
  `bench coto: ${tasks.length} tasks × ${arms.length} arms × ${seeds.length} seeds, ${settings.steps} steps, ` +
    `batch ${settings.batchSize}, lr ${settings.lr}, r ${settings.rank}; ${data.train} train / ${data.eval} eval examples per task`,
);

// Train: arms interleaved per (task, seed) so machine-load drift hits every arm alike.
for (const task of tasks) {
  for (const seed of seeds) {
    for (const arm of arms) {
      const dir = join(out, 'adapters', task.name, arm.name, String(seed));
      const r = await trainedOrCached(dir, { settings, data, task: task.name, arm: arm.name, seed }, () =>
        trainAdapter(model, task, arm, settings, seed),
      );
      const key = `${task.name}/${arm.name}`;
      lab.trained.set(key, [...(lab.trained.get(key) ?? []), r]);
      log(`  trained ${key} seed ${seed}: ${r.seconds.toFixed(1)} s, final loss ${r.finalLoss.toFixed(3)}`);
    }
  }
}
const trainSeconds = (performance.now() - t0) / 1000;

let cluster: ClusterCheck | null = null;
if (a.cluster) {
  const o = { tasks: num(a['cluster-tasks'], 1), seeds: Math.min(seedCount, num(a['cluster-seeds'], 2)) };
  log(`cluster: ${o.tasks} task(s) × ${arms.length} arms × ${o.seeds} seeds as one job on a local cluster`);
  cluster = await clusterCheck(lab, settings, o);
}

const baseScores = Object.fromEntries(tasks.map((t) => [t.name, greedyExactMatch(t.eval, model).accuracy]));
const outcomes: ProbeOutcome[] = [];
for (const probe of probes) {
  const p0 = performance.now();
  const result = await probe.run(lab);
  outcomes.push({ probe, result });
  log(`  probe ${probe.name}: ${((performance.now() - p0) / 1000).toFixed(1)} s`);
}
await closeMergeThreads();

const names = arms.map((x) => x.name);
const baseline = names.includes('lora') ? 'lora' : names[0];
const text = table(outcomes, names, baseline);
const get = (name: string) => outcomes.find((o) => o.probe.name === name)?.result.values;
const single = get('single');
const half = get('prune_every_other');
const third = get('keep_every_third');
if (single && half && third) {
  const L = model.config.numHiddenLayers;
  const prunedCount = (k: number) => keepEvery(k, L).filter((on) => !on).length;
  const baseMean = tasks.reduce((s, t) => s + baseScores[t.name], 0) / tasks.length;
  writeFileSync(
    join(out, 'pruning.svg'),
    pruningSvg(
      Object.fromEntries(
        names.map((n) => [
          n,
          [
            { x: 0, values: single[n] },
            { x: prunedCount(2), values: half[n] },
            { x: prunedCount(3), values: third[n] },
            { x: L, values: seeds.map(() => baseMean) },
          ],
        ]),
      ),
    ),
  );
}
if (Object.keys(lmcCurves).length) writeFileSync(join(out, 'lmc.svg'), lmcSvg(lmcCurves));

const meanLayers = (rows: number[][]) => rows[0].map((_, l) => rows.reduce((s, r) => s + r[l], 0) / rows.length);
const activation = Object.fromEntries(
  names.map((n) => [n, meanLayers(tasks.flatMap((t) => lab.adapters(t.name, n).map((r) => r.activeSteps)))]),
);
const shapleyMeans = Object.fromEntries(Object.entries(shapleyByArm).map(([n, rows]) => [n, meanLayers(rows)]));
const totalSeconds = (performance.now() - t0) / 1000;
const results = {
  started: started.toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model, backend: activeBackend() },
  quick: a.quick,
  settings,
  data,
  tasks: tasks.map((t) => t.name),
  arms: arms.map((x) => ({ name: x.name, description: x.description })),
  seeds,
  baseExactMatch: baseScores,
  activeStepsPerLayer: activation,
  shapleyPerLayer: shapleyMeans,
  lmcCurves,
  trainSeconds,
  totalSeconds,
  cluster,
  probes: outcomes.map((o) => ({
    name: o.probe.name,
    description: o.probe.description,
    better: o.probe.better,
    unit: o.probe.unit,
    paper: o.probe.paper ?? null,
    values: o.result.values,
    raw: o.result.raw,
  })),
  finalLoss: Object.fromEntries([...lab.trained].map(([k, rs]) => [k, rs.map((r) => r.finalLoss)])),
};
writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 1) + '\n');
const header =
  `CoTo bench ${a.quick ? '(QUICK: 2 seeds, CI-sized; not evidence) ' : ''}— ${started.toISOString()}, ` +
  `${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, backend ${activeBackend()}; ${tasks.length} tasks, ` +
  `${seeds.length} seeds per arm, ${settings.steps} steps, lr ${settings.lr}; ${totalSeconds.toFixed(0)} s`;
const extra = [
  '',
  `base model exact match (no adapter): ${tasks.map((t) => `${t.name} ${(100 * baseScores[t.name]).toFixed(0)} %`).join(', ')}`,
  `mean active steps per layer (of ${settings.steps}): ${names.map((n) => `${n} [${activation[n].map((x) => x.toFixed(1)).join(', ')}]`).join('; ')}`,
  ...(Object.keys(shapleyMeans).length
    ? [
        `mean Shapley value per layer (−loss): ${Object.entries(shapleyMeans)
          .map(([n, v]) => `${n} [${v.map((x) => x.toFixed(3)).join(', ')}]`)
          .join('; ')}`,
      ]
    : []),
  ...(cluster
    ? [
        `cluster job ${cluster.jobId} (${cluster.seconds.toFixed(0)} s): adapters vs local, same seeds — max |Δ| ` +
          cluster.adapters.map((c) => `${c.task}/${c.arm}/${c.seed} ${c.maxAbsDiff.toExponential(1)}`).join(', '),
        ...cluster.adapters.map(
          (c) =>
            `  coordinator report ${c.task}/${c.arm}/${c.seed}: activations per layer [${c.activations.join(', ')}], ` +
            `Shapley (−loss) [${c.shapley ? c.shapley.map((x) => x.toFixed(3)).join(', ') : 'not estimated'}]`,
        ),
      ]
    : []),
  `'better'/'worse': the paired 95 % CI of (arm − ${baseline}) over seeds excludes 0; 'cannot tell': it does not.`,
];
writeFileSync(join(out, 'table.md'), `${header}\n\n${text}\n${extra.join('\n')}\n`);
console.log(header);
console.log('');
console.log(text);
for (const line of extra) console.log(line);
console.log(`\nwrote ${join(out, 'table.md')}, results.json, lmc.svg, pruning.svg`);
model.dispose();
