// The training loop's settings, as the trainer and the local run read them. Job specs spell them in
// snake_case (shared/job/ maps them); these defaults are the ones a spec gets for fields it omits.

import { ChorusError } from '../errors.ts';

export const LR_SCHEDULES = ['cosine', 'linear', 'constant'] as const;
type LrSchedule = (typeof LR_SCHEDULES)[number];

/** Where the frozen base weights live: in the engine (resident), or on the host in their stored dtype and
 * widened one layer at a time (streamed); auto streams only when the memory plan says resident does not fit. */
export const BASE_WEIGHTS_MODES = ['resident', 'streamed', 'auto'] as const;
type BaseWeightsMode = (typeof BASE_WEIGHTS_MODES)[number];

/** Per-layer activation recomputation: on, off, or auto (on when the memory plan needs it). */
type GradientCheckpointing = boolean | 'auto';

export interface TrainingSettings {
  /** Optimiser steps. */
  steps: number;
  batchSize: number;
  seqLen: number;
  /** Micro-batches per optimiser step. */
  gradAccum: number;
  lr: number;
  warmupSteps: number;
  schedule: LrSchedule;
  /** The decay ends at minLrRatio · lr. */
  minLrRatio: number;
  /** AdamW's decoupled weight decay. */
  weightDecay: number;
  betas: [number, number];
  eps: number;
  /** Global-norm clipping; 0 turns it off. */
  maxGradNorm: number;
  /** Steps between evaluations; 0 turns periodic evaluation off. */
  evalEvery: number;
  evalBatches: number;
  /** Steps between checkpoints; 0 writes only the final one (the cluster still checkpoints, see shared/shard). */
  checkpointEvery: number;
  /** How many of the newest checkpoints a local run keeps; 0 keeps all. */
  keepCheckpoints: number;
  logEvery: number;
  gradientCheckpointing: GradientCheckpointing;
  baseWeights: BaseWeightsMode;
  /** R-Drop (docs/METHODS.md): two dropout passes, loss = mean CE + alpha · symmetric KL. Absent: off. */
  rdrop?: { alpha: number };
  /**
   * Generation-based scoring of the finished adapter on the eval set (shared/eval/score.ts): greedy
   * answers cut at a stop string, at most `tokens` new tokens (default: longest completion + 1).
   * Absent: the cluster scores loss only.
   */
  evalGenerate?: { stop?: string[]; tokens?: number };
}

/** Everything but `steps`, which a job must give. */
export const TRAINING_DEFAULTS: Omit<TrainingSettings, 'steps'> = {
  batchSize: 8,
  seqLen: 128,
  gradAccum: 1,
  lr: 1e-3,
  warmupSteps: 0,
  schedule: 'cosine',
  minLrRatio: 0,
  weightDecay: 0,
  betas: [0.9, 0.999],
  eps: 1e-8,
  maxGradNorm: 1.0,
  evalEvery: 50,
  evalBatches: 4,
  checkpointEvery: 100,
  keepCheckpoints: 3,
  logEvery: 10,
  gradientCheckpointing: 'auto',
  baseWeights: 'auto',
};

/**
 * How one training step runs, after the memory plan has resolved the spec's `auto`s (shared/train/memory-plan.ts
 * decides; the model and trainer only obey). Every choice gives the same adapter up to float32 rounding.
 */
export interface EngineOptions {
  /** Keep only each decoder layer's input in the forward; recompute one layer at a time in the backward. */
  gradientCheckpointing: boolean;
  /**
   * resident: base weights are float32 engine tensors for the model's life (today's behaviour).
   * streamed: they stay on the host in their stored dtype and are widened one layer at a time; this implies
   * per-layer recomputation (a widened layer is released after its forward, so its backward widens it again).
   */
  baseWeights: 'resident' | 'streamed';
  /**
   * Attention in blocks of this many queries and keys with a running softmax (exact), so a layer never holds
   * batch × heads × seq × seq scores. Undefined: one dense block (fastest while the scores fit).
   */
  attentionBlock?: number;
  /** LM head + cross-entropy over this many tokens at a time (never batch × seq × vocab logits). Default 1024. */
  headChunkTokens?: number;
}

/** Today's path: everything resident, nothing recomputed, dense attention. */
export const ENGINE_DEFAULTS: EngineOptions = { gradientCheckpointing: false, baseWeights: 'resident' };

/** Refuses option values no step can run with (a block or chunk must hold at least one token). */
export function checkEngineOptions(o: Partial<EngineOptions>, source = 'engine options'): void {
  for (const key of ['attentionBlock', 'headChunkTokens'] as const) {
    const v = o[key];
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) {
      throw new ChorusError(`${source}: ${key} must be a positive integer, got ${v}`);
    }
  }
}
