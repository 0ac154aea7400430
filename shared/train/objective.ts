// The training objective of one micro-batch, as a SUM over its loss-bearing tokens (the trainer's
// gradients are sums; see trainer.ts): plain next-token cross-entropy, its mean over K dropout
// samples (multi-sample dropout, lora.dropout_samples), or R-Drop (training.rdrop, rdrop.ts).
// Dropout sample k of a micro-batch uses dropoutSampleSeed(seed, k); sample 0 is the seed itself,
// so one sample is exactly the plain objective.
import { tf } from '../tensor/engine.ts';
import { deriveSeed } from '../tensor/random.ts';
import type { LlamaModel } from '../model/llama.ts';
import { nextTokenLoss, type LossOptions, type TokenBatch } from '../model/loss.ts';
import { rdropLossSum } from './rdrop.ts';

export interface Objective {
  /** Dropout samples averaged (multi-sample dropout); 1 = plain. */
  samples: number;
  /** R-Drop's α, or null when R-Drop is off. */
  rdropAlpha: number | null;
}

/** Dropout seed of sample k of a micro-batch whose dropout seed is `seed`. */
export function dropoutSampleSeed(seed: number, k: number): number {
  return k === 0 ? seed : deriveSeed(seed, 0xd5a, k);
}

/** Σ over the `count` loss-bearing tokens of the objective (scalar tensor; inside variableGrads). */
export function objectiveSum(
  model: LlamaModel,
  batch: TokenBatch,
  fwd: Omit<LossOptions, 'dropoutSeed' | 'training'>,
  dropoutSeed: number,
  count: number,
  objective: Objective,
): tf.Scalar {
  if (objective.rdropAlpha !== null) {
    const seeds = [dropoutSampleSeed(dropoutSeed, 0), dropoutSampleSeed(dropoutSeed, 1)] as const;
    return rdropLossSum(model, batch, fwd, seeds, objective.rdropAlpha);
  }
  let total: tf.Scalar | null = null;
  for (let k = 0; k < objective.samples; k++) {
    const seed = dropoutSampleSeed(dropoutSeed, k);
    const mean = nextTokenLoss(model, batch, { ...fwd, training: true, dropoutSeed: seed });
    total = total ? (tf.add(total, mean) as tf.Scalar) : mean;
  }
  return tf.mul(total!, count / objective.samples) as tf.Scalar;
}
