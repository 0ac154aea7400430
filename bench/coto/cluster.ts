// The benchmark through the cluster: the same (task, arm, seed) adapters trained as one Chorus job on
// a throwaway local cluster (a coordinator and a worker as real processes, bench/lib/cluster.ts).
// Each seed is a task of the job with its own `seed` (a task's replicas are data-parallel copies of
// ONE adapter, so seeds are tasks, not replicas). The job's adapters are compared with the local
// ones, and the coordinator's per-layer CoTo activation counts and Shapley values are read from its
// report, the figures its dashboard shows.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JobSpec } from '../../shared/job/types.ts';
import { readPeftAdapter } from '../../shared/formats/peft.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';
import { startBenchCluster } from '../lib/cluster.ts';
import type { Arm } from './arms.ts';
import type { Lab } from './lab.ts';
import { baselineTask, type TrainSettings } from './train.ts';

interface ClusterAdapter {
  task: string;
  arm: string;
  seed: number;
  /** Largest |cluster − local| over every A and B entry. */
  maxAbsDiff: number;
  /** From the coordinator's report: steps each layer trained, and its Shapley value (−loss). */
  activations: number[];
  shapley: number[] | null;
}

export interface ClusterCheck {
  jobId: string;
  seconds: number;
  adapters: ClusterAdapter[];
}

function maxAbsDiff(a: LoraAdapter, b: LoraAdapter): number {
  let worst = 0;
  for (const [path, m] of a.modules) {
    const o = b.modules.get(path);
    if (!o) return Infinity;
    for (const [x, y] of [
      [m.a, o.a],
      [m.b, o.b],
    ] as const) {
      if (x.length !== y.length) return Infinity;
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
    }
  }
  return a.modules.size === b.modules.size ? worst : Infinity;
}

interface ReportTask {
  name: string;
  layers: Array<{ activations: number; shapley: number | null }>;
}

/** Trains `taskCount` tasks × every arm × the first `seedCount` seeds on a local cluster; compares. */
export async function clusterCheck(
  lab: Lab,
  settings: TrainSettings,
  o: { tasks: number; seeds: number },
): Promise<ClusterCheck> {
  // Under the repository (the bench workers' working directory, hence their default --data-root).
  const runs = new URL('../../runs', import.meta.url).pathname;
  mkdirSync(runs, { recursive: true });
  const dir = mkdtempSync(join(runs, 'bench-coto-cluster-'));
  const base = new URL('../../demo/base', import.meta.url).pathname;
  const units: Array<{ name: string; task: string; arm: Arm; seed: number; seedIndex: number }> = [];
  const specTasks: JobSpec['tasks'] = [];
  for (const task of lab.tasks.slice(0, o.tasks)) {
    const file = join(dir, `${task.name}.train.jsonl`);
    writeFileSync(file, task.trainText.map((e) => JSON.stringify(e)).join('\n') + '\n');
    for (const arm of lab.arms) {
      lab.seeds.slice(0, o.seeds).forEach((seed, seedIndex) => {
        const name = `${task.name}.${arm.name}.s${seed}`;
        const t = arm.configure(baselineTask(task, settings, seed));
        specTasks.push({ ...t, name, baseModel: base, data: { train: file } });
        units.push({ name, task: task.name, arm, seed, seedIndex });
      });
    }
  }
  const spec: JobSpec = {
    name: 'bench-coto',
    baseModel: base,
    seed: lab.seeds[0],
    tasks: specTasks,
    sync: { mode: 'gradients' },
    merge: null,
  };
  const cluster = await startBenchCluster(1, specTasks.length);
  try {
    const t0 = performance.now();
    const jobId = await cluster.client.submitSpec(spec, 'bench-coto');
    const job = await cluster.client.wait(jobId);
    if (job.state !== 'succeeded') throw new Error(`cluster job ${jobId} ${job.state}: ${job.reason}`);
    const seconds = (performance.now() - t0) / 1000;
    const out = join(dir, 'result');
    await cluster.client.downloadResult(jobId, out);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { tasks: ReportTask[] };
    const adapters: ClusterAdapter[] = [];
    for (const u of units) {
      const remote = await readPeftAdapter(join(out, u.name));
      const local = lab.adapters(u.task, u.arm.name)[u.seedIndex].adapter;
      const r = report.tasks.find((t) => t.name === u.name);
      const shapley = r?.layers.map((l) => l.shapley);
      adapters.push({
        task: u.task,
        arm: u.arm.name,
        seed: u.seed,
        maxAbsDiff: maxAbsDiff(remote, local),
        activations: r?.layers.map((l) => l.activations) ?? [],
        shapley: shapley && shapley.every((x) => x !== null) ? (shapley as number[]) : null,
      });
      lab.say(`  cluster ${u.name}: max |cluster − local| = ${adapters.at(-1)!.maxAbsDiff.toExponential(2)}`);
    }
    return { jobId, seconds, adapters };
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
