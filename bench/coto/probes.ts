// The probes of the CoTo paper, each a function of the trained adapters (Lab) giving, per arm, one
// value per seed (or seed pair): the mean over tasks. A new arm (bench/coto/arms.ts) runs through
// every probe unchanged. `better` says which direction is an improvement; `paper` holds the paper's
// LoRA → CoTo figures where it reports the probe (CLIP ViT-B/16 on DTD, and GLUE for the multi-task
// merge), for direction only: the scale and the tasks differ.
import { shapleyPlan, shapleyValues } from '../../coordinator/shapley.ts';
import { Lab, seedPairs } from './lab.ts';

export interface ProbeResult {
  /** arm → one value per seed (or pair), each the mean over tasks. */
  values: Record<string, number[]>;
  /** arm → task → the per-seed values before averaging over tasks. */
  raw: Record<string, Record<string, number[]>>;
}

export interface Probe {
  name: string;
  description: string;
  better: 'higher' | 'lower' | 'none';
  paper?: { lora: number; coto: number; what: string };
  unit: '%' | 'loss' | 's' | 'Δloss';
  run(lab: Lab): Promise<ProbeResult>;
}

/** Runs f for every (arm, task, unit index) and averages over tasks. */
async function perTask(
  lab: Lab,
  units: number,
  f: (arm: string, task: number, unit: number) => Promise<number> | number,
): Promise<ProbeResult> {
  const values: ProbeResult['values'] = {};
  const raw: ProbeResult['raw'] = {};
  for (const arm of lab.arms) {
    raw[arm.name] = {};
    for (let ti = 0; ti < lab.tasks.length; ti++) {
      const xs: number[] = [];
      for (let u = 0; u < units; u++) xs.push(await f(arm.name, ti, u));
      raw[arm.name][lab.tasks[ti].name] = xs;
    }
    values[arm.name] = Array.from(
      { length: units },
      (_, u) => lab.tasks.reduce((a, t) => a + raw[arm.name][t.name][u], 0) / lab.tasks.length,
    );
  }
  return { values, raw };
}

/** Layers whose adapters stay on: every other layer pruned keeps the even ones; "every third" keeps 0, 3, … */
export const keepEvery = (k: number, layers: number) => Array.from({ length: layers }, (_, l) => l % k === 0);

function pruned(name: string, k: number, description: string, paper?: Probe['paper']): Probe {
  return {
    name,
    description,
    better: 'higher',
    unit: '%',
    paper,
    run: (lab) =>
      perTask(lab, lab.seeds.length, (arm, ti, s) =>
        lab.exactMatch(lab.tasks[ti], lab.adapters(lab.tasks[ti].name, arm)[s].adapter, keepEvery(k, lab.layers)),
      ),
  };
}

function multiTask(
  method: 'linear' | 'task_arithmetic' | 'ties' | 'orthogonal_dropout',
  paper?: Probe['paper'],
): Probe {
  const weights = (n: number) =>
    new Array<number>(n).fill(
      method === 'linear' || method === 'orthogonal_dropout' ? 1 / n : method === 'ties' ? 1 : 0.5,
    );
  const how =
    method === 'linear'
      ? 'average of the task ΔW'
      : method === 'task_arithmetic'
        ? 'Σ 0.5·ΔW (task arithmetic, λ = 0.5)'
        : method === 'ties'
          ? 'TIES, density 0.5, weights 1'
          : 'orthogonal dropout: disjoint 1/4 shares of each module’s output units, ×4, weights 1/4 (the average in expectation)';
  return {
    name: `multi_${method}`,
    description: `the ${'four'} task adapters of one seed merged (${how}); exact match on each task`,
    better: 'higher',
    unit: '%',
    paper,
    async run(lab) {
      const values: ProbeResult['values'] = {};
      const raw: ProbeResult['raw'] = {};
      for (const arm of lab.arms) {
        raw[arm.name] = Object.fromEntries(lab.tasks.map((t) => [t.name, [] as number[]]));
        values[arm.name] = [];
        for (let s = 0; s < lab.seeds.length; s++) {
          const merged = await lab.merge(
            lab.tasks.map((t) => lab.adapters(t.name, arm.name)[s].adapter),
            { method, weights: weights(lab.tasks.length), ...(method === 'ties' ? { density: 0.5 } : {}) },
          );
          let sum = 0;
          for (const t of lab.tasks) {
            const em = lab.exactMatch(t, merged);
            raw[arm.name][t.name].push(em);
            sum += em;
          }
          values[arm.name].push(sum / lab.tasks.length);
        }
      }
      return { values, raw };
    },
  };
}

const LMC_POINTS = 11;

/** LMC curves, kept for the plot: arm → mean loss at each α over tasks and pairs. */
export const lmcCurves: Record<string, number[]> = {};

const lmc: Probe = {
  name: 'lmc_barrier',
  description: `loss along (1−α)·ΔW_a + α·ΔW_b at ${LMC_POINTS} points between two seeds; barrier = max over α of the loss above the straight line between the ends`,
  better: 'lower',
  unit: 'Δloss',
  async run(lab) {
    const pairs = seedPairs(lab.seeds.length);
    const curves: Record<string, number[][]> = {};
    const r = await perTask(lab, pairs.length, async (arm, ti, p) => {
      const task = lab.tasks[ti];
      const [a, b] = pairs[p].map((s) => lab.adapters(task.name, arm)[s].adapter);
      const losses: number[] = [];
      for (let i = 0; i < LMC_POINTS; i++) {
        const alpha = i / (LMC_POINTS - 1);
        // Ends are the adapters themselves; inside, the exact ΔW-space interpolation (rank r_a + r_b).
        const at =
          i === 0
            ? a
            : i === LMC_POINTS - 1
              ? b
              : await lab.merge([a, b], { method: 'linear', weights: [1 - alpha, alpha] });
        losses.push(lab.loss(task, at));
      }
      (curves[arm] ??= []).push(losses);
      const line = (i: number) => losses[0] + ((losses[LMC_POINTS - 1] - losses[0]) * i) / (LMC_POINTS - 1);
      return Math.max(...losses.map((l, i) => l - line(i)));
    });
    for (const [arm, cs] of Object.entries(curves))
      lmcCurves[arm] = Array.from({ length: LMC_POINTS }, (_, i) => cs.reduce((acc, c) => acc + c[i], 0) / cs.length);
    return r;
  },
};

/** Per-layer Shapley values (value = −loss, the coordinator's definition), kept per arm for the report. */
export const shapleyByArm: Record<string, number[][]> = {};

const shapley: Probe = {
  name: 'shapley_spread',
  description:
    'per-layer Shapley values of each adapter (value of a layer coalition = −loss with only those layers on; exact over all coalitions, coordinator/shapley.ts); spread = max − min over layers',
  better: 'none',
  unit: 'Δloss',
  async run(lab) {
    const plan = shapleyPlan(lab.layers, 8, 'bench-coto');
    return perTask(lab, lab.seeds.length, (arm, ti, s) => {
      const adapter = lab.adapters(lab.tasks[ti].name, arm)[s].adapter;
      const losses = plan.coalitions.map((c) =>
        lab.loss(
          lab.tasks[ti],
          adapter,
          Array.from({ length: lab.layers }, (_, l) => c.includes(l)),
        ),
      );
      const phi = shapleyValues(plan, losses);
      (shapleyByArm[arm] ??= []).push(phi);
      return Math.max(...phi) - Math.min(...phi);
    });
  },
};

export const PROBES: Probe[] = [
  {
    name: 'single',
    description: 'exact match of each task adapter on its held-out examples',
    better: 'higher',
    unit: '%',
    paper: { lora: 71.61, coto: 72.68, what: 'DTD accuracy' },
    run: (lab) =>
      perTask(lab, lab.seeds.length, (arm, ti, s) =>
        lab.exactMatch(lab.tasks[ti], lab.adapters(lab.tasks[ti].name, arm)[s].adapter),
      ),
  },
  {
    name: 'seed_merge',
    description: 'two seeds of one task merged 1:1 (average of ΔW); exact match',
    better: 'higher',
    unit: '%',
    paper: { lora: 65.6, coto: 72.03, what: 'DTD, two seeds merged' },
    async run(lab) {
      const pairs = seedPairs(lab.seeds.length);
      return perTask(lab, pairs.length, async (arm, ti, p) => {
        const task = lab.tasks[ti];
        const ads = pairs[p].map((s) => lab.adapters(task.name, arm)[s].adapter);
        return lab.exactMatch(task, await lab.merge(ads, { method: 'linear', weights: [0.5, 0.5] }));
      });
    },
  },
  pruned('prune_every_other', 2, 'adapters of every other layer removed (layers 1, 3, … off); exact match', {
    lora: 63.3,
    coto: 71.11,
    what: 'DTD, every other layer pruned',
  }),
  pruned('keep_every_third', 3, 'only every third layer keeps its adapter (layers 0, 3, … on); exact match'),
  multiTask('linear', { lora: 59.35, coto: 63.41, what: 'six GLUE LoRAs, linear fusion' }),
  multiTask('task_arithmetic'),
  multiTask('ties'),
  multiTask('orthogonal_dropout'),
  lmc,
  shapley,
  {
    name: 'train_seconds',
    description: 'wall time of the optimiser steps of one adapter (same steps in every arm)',
    better: 'lower',
    unit: 's',
    run: (lab) => perTask(lab, lab.seeds.length, (arm, ti, s) => lab.adapters(lab.tasks[ti].name, arm)[s].seconds),
  },
];
