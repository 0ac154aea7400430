// One optimiser step's internals, on the trainer's own buffers (AdapterTrainer in trainer.ts owns
// them, the step counter and the public API; its header describes the rules): this replica's
// gradient sums over its micro-batches, the clipped AdamW update of the layers CoTo activated, and
// the copy of the updated values into the runtime's variables.
import { tf } from '../tensor/engine.ts';
import { deriveSeed } from '../tensor/random.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { TokenBatch } from '../model/loss.ts';
import type { LoraRuntime } from '../lora/runtime.ts';
import type { ResolvedTask } from '../job/types.ts';
import type { BatchStream } from '../data/batches.ts';
import { objectiveSum, dropoutSampleSeed, type Objective } from './objective.ts';
import { holdMasked, maskGradient, type FrozenEntries } from './frozen.ts';
import { layeredGradients } from './layered.ts';
import type { EngineOptions } from './settings.ts';
import { adamwUpdate } from './adamw.ts';
import { clipCoefficient, globalNorm } from './clip.ts';
import { checkLossFinite } from './finite.ts';
import type { FlatLayout } from './layout.ts';

export interface GradientResult {
  step: number;
  /** Flat gradients of the SUM of token losses (layout: see FlatLayout); zeros for inactive layers. */
  gradSums: Float32Array;
  /** Loss-bearing tokens these sums cover. */
  tokens: number;
  /** Sum of the token losses. */
  lossSum: number;
  activeLayers: boolean[];
  /** Tokens processed (loss-bearing or not), for throughput figures. */
  inputTokens: number;
}

export interface ApplyResult {
  step: number;
  lr: number;
  /** Global norm of the mean gradient before clipping. */
  gradNorm: number;
  clipCoef: number;
}

export interface StepResult extends ApplyResult {
  loss: number;
  tokens: number;
  inputTokens: number;
  p: number;
  activeLayers: boolean[];
  seconds: number;
}

/** One LoRA A or B matrix: its variable and where its values lie in the flat layout. */
export interface ParamBlock {
  variable: tf.Variable;
  offset: number;
  length: number;
  slot: number;
}

/** What a step reads and updates: the trainer's parts (params, moments and step counts in place). */
export interface StepParts {
  model: LlamaModel;
  runtime: LoraRuntime;
  layout: FlatLayout;
  blocks: ParamBlock[];
  data: BatchStream;
  engine: EngineOptions;
  objective: Objective;
  /** lora.sparsity's pruned entries and lora.split's idle groups (null: neither). */
  frozen: FrozenEntries | null;
  training: ResolvedTask['training'];
  seed: number;
  replica: number;
  params: Float32Array;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
  /** Adam step count of each module (layout.slots order). */
  moduleSteps: Int32Array;
}

/**
 * Runs gradAccum micro-batches for optimiser step `step` with `activeLayers` and returns summed
 * gradients (consumes batches from the data stream).
 */
export function computeGradientSums(p: StepParts, step: number, activeLayers: boolean[]): GradientResult {
  p.runtime.setActiveGroups(p.frozen?.groupsAt(step) ?? null);
  const gradSums = new Float32Array(p.layout.size);
  const active = p.blocks.filter((b) => activeLayers[p.layout.slots[b.slot].layer]);
  const varList = active.map((b) => b.variable);
  let tokens = 0;
  let lossSum = 0;
  let inputTokens = 0;
  const accum = p.training.gradAccum;
  const { attentionBlock, headChunkTokens } = p.engine;
  const offsets = new Map(active.map((b) => [b.variable.name, b]));
  const samples = p.objective.samples;
  const add = (variable: tf.Variable, g: tf.Tensor) => {
    const b = offsets.get(variable.name)!;
    const data = g.dataSync() as Float32Array;
    // The layered path runs each dropout sample on its own; the objective is their mean.
    const scale = p.engine.gradientCheckpointing ? 1 / samples : 1;
    for (let i = 0; i < b.length; i++) gradSums[b.offset + i] += scale === 1 ? data[i] : data[i] * scale;
  };
  for (let micro = 0; micro < accum; micro++) {
    const batch = p.data.next();
    inputTokens += batch.batchSize * batch.seqLen;
    const count = countTargets(batch);
    if (count === 0) continue;
    tokens += count;
    const dropoutSeed = deriveSeed(p.seed, step, p.replica, micro);
    const fwd = { lora: p.runtime, activeLayers, attentionBlock, headChunkTokens };
    if (p.engine.gradientCheckpointing) {
      for (let k = 0; k < samples; k++) {
        const opts = { ...fwd, training: true, dropoutSeed: dropoutSampleSeed(dropoutSeed, k) };
        lossSum += layeredGradients(p.model, batch, opts, add) / samples;
      }
      continue;
    }
    const lossOf = () => tf.tidy(() => objectiveSum(p.model, batch, fwd, dropoutSeed, count, p.objective));
    if (varList.length === 0) {
      // The active layers carry no LoRA module (an adapter limited to some layers): loss only.
      const value = lossOf();
      lossSum += value.dataSync()[0];
      value.dispose();
      continue;
    }
    const { value, grads } = tf.variableGrads(lossOf, varList);
    lossSum += value.dataSync()[0];
    value.dispose();
    for (const b of active) add(b.variable, grads[b.variable.name]);
    tf.dispose(grads);
  }
  p.runtime.setActiveGroups(null);
  checkLossFinite(lossSum, step);
  return { step, gradSums, tokens, lossSum, activeLayers, inputTokens };
}

/**
 * The update of optimiser step `step` from summed gradients (Σ over micro-batches and replicas):
 * mean = gradSums / tokens, global-norm clipping, AdamW with learning rate `lr` on the modules of
 * `activeLayers` only (their Adam step counts advance), frozen entries held. Updates params and
 * moments in place; with no tokens only the norm (0) is computed.
 */
export function clippedAdamwStep(
  p: StepParts,
  gradSums: Float32Array,
  tokens: number,
  step: number,
  activeLayers: boolean[],
  lr: number,
): { gradNorm: number; clipCoef: number } {
  const tr = p.training;
  const frozen = p.frozen?.maskAt(step) ?? null;
  if (frozen) gradSums = maskGradient(gradSums, frozen);
  const ranges = p.layout.rangesOf(activeLayers);
  const scale = tokens > 0 ? 1 / tokens : 0;
  const gradNorm = globalNorm(gradSums, ranges, scale);
  const clipCoef = clipCoefficient(gradNorm, tr.maxGradNorm);
  if (tokens > 0) {
    const h = { lr, beta1: tr.betas[0], beta2: tr.betas[1], eps: tr.eps, weightDecay: tr.weightDecay };
    holdMasked(frozen, [p.params, p.expAvg, p.expAvgSq], () =>
      p.layout.slots.forEach((s, i) => {
        if (!activeLayers[s.layer]) return;
        p.moduleSteps[i] += 1;
        adamwUpdate(
          p.params,
          gradSums,
          p.expAvg,
          p.expAvgSq,
          s.offset,
          s.aLength + s.bLength,
          p.moduleSteps[i],
          scale * clipCoef,
          h,
        );
      }),
    );
  }
  return { gradNorm, clipCoef };
}

/** Copies the master parameters of the given layers into the runtime's variables. */
export function pushParams(blocks: ParamBlock[], layout: FlatLayout, params: Float32Array, layers: boolean[]): void {
  tf.tidy(() => {
    for (const b of blocks) {
      if (!layers[layout.slots[b.slot].layer]) continue;
      // A copy: some backends keep a reference to the array a tensor was made from.
      const values = params.slice(b.offset, b.offset + b.length);
      b.variable.assign(tf.tensor(values, b.variable.shape, 'float32'));
    }
  });
}

/** Loss-bearing targets of a batch: positions t ≥ 1 with a non-zero mask (see TokenBatch). */
function countTargets(batch: TokenBatch): number {
  let count = 0;
  for (let b = 0; b < batch.batchSize; b++) {
    for (let t = 1; t < batch.seqLen; t++) if (batch.targetMask[b * batch.seqLen + t] !== 0) count++;
  }
  return count;
}
