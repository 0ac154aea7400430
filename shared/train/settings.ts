// The training loop's settings, as the trainer and the local run read them. Job specs spell them in
// snake_case (shared/job/ maps them); these defaults are the ones a spec gets for fields it omits.

export const LR_SCHEDULES = ['cosine', 'linear', 'constant'] as const;
type LrSchedule = (typeof LR_SCHEDULES)[number];

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
};
