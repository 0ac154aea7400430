// Trains one adapter of the benchmark in this process: the shared trainer (the one the cluster's
// runners use) on a task's in-memory data, with an arm's configuration and a seed.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LlamaModel } from '../../shared/model/llama.ts';
import { readPeftAdapter, writePeftAdapter } from '../../shared/formats/peft.ts';
import type { LoraAdapter } from '../../shared/lora/types.ts';
import type { ResolvedTask } from '../../shared/job/types.ts';
import { TRAINING_DEFAULTS } from '../../shared/train/settings.ts';
import { AdapterTrainer } from '../../shared/train/trainer.ts';
import type { Arm } from './arms.ts';
import type { BenchTask } from './tasks.ts';

export interface TrainSettings {
  steps: number;
  batchSize: number;
  lr: number;
  rank: number;
}

/** The plain-LoRA task every arm starts from: the demo job's LoRA and optimiser, fewer steps. */
export function baselineTask(task: BenchTask, s: TrainSettings, seed: number): ResolvedTask {
  return {
    name: task.name,
    baseModel: 'demo/base',
    data: { train: `${task.name}.train` },
    replicas: 1,
    seed,
    lora: {
      r: s.rank,
      loraAlpha: 2 * s.rank,
      loraDropout: 0,
      targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
      useRslora: false,
    },
    coto: null,
    training: {
      ...TRAINING_DEFAULTS,
      steps: s.steps,
      batchSize: s.batchSize,
      seqLen: 24,
      lr: s.lr,
      warmupSteps: Math.max(1, Math.floor(s.steps / 10)),
      schedule: 'cosine',
      weightDecay: 0,
      maxGradNorm: 1,
      evalEvery: 0,
      checkpointEvery: 0,
    },
  };
}

export interface Trained {
  adapter: LoraAdapter;
  /** Wall time of the optimiser steps (not data preparation or scoring). */
  seconds: number;
  /** Steps each layer's adapter trained. */
  activeSteps: number[];
  finalLoss: number;
}

export function trainAdapter(model: LlamaModel, task: BenchTask, arm: Arm, s: TrainSettings, seed: number): Trained {
  const resolved = arm.configure(baselineTask(task, s, seed));
  const trainer = AdapterTrainer.create({ model, task: resolved, examples: task.train, seed });
  try {
    let finalLoss = NaN;
    const t0 = performance.now();
    for (let i = 0; i < s.steps; i++) finalLoss = trainer.trainStep().loss;
    const seconds = (performance.now() - t0) / 1000;
    return { adapter: trainer.getAdapter(), seconds, activeSteps: [...trainer.activation.counts], finalLoss };
  } finally {
    trainer.dispose();
  }
}

/**
 * The adapter kept in `dir` by an earlier run with the same settings, or a fresh one (then kept there).
 * `key` (the settings) must match, so a changed run never reuses a stale adapter.
 */
export async function trainedOrCached(dir: string, key: object, train: () => Trained): Promise<Trained> {
  const meta = join(dir, 'training.json');
  const want = JSON.stringify(key);
  if (existsSync(meta)) {
    const m = JSON.parse(readFileSync(meta, 'utf8')) as Omit<Trained, 'adapter'> & { key: string };
    if (m.key === want) {
      return {
        adapter: await readPeftAdapter(dir),
        seconds: m.seconds,
        activeSteps: m.activeSteps,
        finalLoss: m.finalLoss,
      };
    }
  }
  const r = train();
  await writePeftAdapter(dir, r.adapter);
  const { adapter: _, ...figures } = r;
  writeFileSync(meta, JSON.stringify({ key: want, ...figures }) + '\n');
  return r;
}
