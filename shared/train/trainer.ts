// The adapter trainer: a step-level API that the local `chorus train` loop and the cluster's
// data-parallel runners both drive.
//
//   const t = AdapterTrainer.create({ model, task, examples, evalExamples, replica, replicas });
//   const g = t.computeGradients(step);       // this replica's micro-batches for optimiser step `step`
//   // … cluster: add gradSums / tokens / lossSum over replicas …
//   t.applyGradients(sumOfGradSums, sumOfTokens, step);   // clip + AdamW + LR schedule
//   t.trainStep();                            // both, locally
//
// Gradients are SUMS over loss-bearing tokens (not means), so micro-batches and replicas combine
// exactly: the gradient of the mean loss of the global batch is Σ gradSums / Σ tokens. The flat
// layout (shared/train/layout.ts) is: modules by layer, then q,k,v,o,gate,up,down; A then B.
//
// CoTo: step `s` uses activeLayersAt(schedule, seed, s, steps, layers) for all its
// micro-batches; an inactive layer gets no gradient (it is not even differentiated), and no update:
// no weight decay, no moment update, no advance of its Adam step counter. Every process computes
// the same mask from (seed, step), so replicas agree without talking.
//
// Determinism: dropout seeds derive from (seed, step, replica, micro-batch); data order comes from
// the batch stream's seeded shuffle and cursor. There is no other random state, so state()/restore()
// resumes bit-exactly.
//
// This file creates the trainer (option checks, the starting adapter, lora.sparsity's pruning) and
// keeps its state; a step's gradient and update loops are in trainer-step.ts.
import { ChorusError } from '../errors.ts';
import { deriveSeed } from '../tensor/random.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Objective } from './objective.ts';
import { methodProblems } from '../job/method-rules.ts';
import { FrozenEntries } from './frozen.ts';
import { pruneMasks } from './snip.ts';
import { checkEngineOptions, ENGINE_DEFAULTS, type EngineOptions } from './settings.ts';
import { evaluateExamples, type EvalSummary } from './evaluate.ts';
import { LoraRuntime } from '../lora/runtime.ts';
import type { LoraAdapter, LoraConfig } from '../lora/types.ts';
import { activeLayersAt, probabilityAt } from '../coto/schedule.ts';
import { LayerActivity, type LayerActivityJson } from '../coto/activity.ts';
import type { ResolvedTask } from '../job/types.ts';
import { checkGradientFinite } from './finite.ts';
import { FlatLayout } from './layout.ts';
import { learningRate } from './lr-schedule.ts';
import { replicaBatchStream, type BatchStream, type Cursor, type TokenExample } from '../data/batches.ts';
import {
  clippedAdamwStep,
  computeGradientSums,
  pushParams,
  type ApplyResult,
  type GradientResult,
  type ParamBlock,
  type StepParts,
  type StepResult,
} from './trainer-step.ts';

export type { EvalSummary } from './evaluate.ts';
export type { ApplyResult, GradientResult, StepResult } from './trainer-step.ts';

export interface TrainerOptions {
  model: LlamaModel;
  task: ResolvedTask;
  /** Tokenised training examples (the whole set: the trainer takes its replica's shard). */
  examples: TokenExample[];
  evalExamples?: TokenExample[];
  /** This replica's index and the number of data-parallel replicas (default 0 of 1). */
  replica?: number;
  replicas?: number;
  /** Overrides task.seed (CoTo masks, LoRA init, shuffling, dropout). */
  seed?: number;
  /** Start from this adapter instead of a fresh PEFT initialisation. */
  adapter?: LoraAdapter;
  /** Written into adapter_config.json's base_model_name_or_path. */
  baseModelName?: string;
  /** Token id that pads short examples (always masked out of the loss). Default 0. */
  padId?: number;
  /**
   * How a step runs, as the memory plan resolved it (default: today's path). baseWeights is the model's
   * (fixed when it was built); a streamed model always recomputes per layer.
   */
  engine?: Partial<Omit<EngineOptions, 'baseWeights'>>;
}

/** Everything needed to continue training exactly (plain data: serialisable). */
export interface TrainerState {
  /** Optimiser steps completed (the next step to run). */
  step: number;
  params: Float32Array;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
  /** Adam step count of each module (layout.slots order). */
  moduleSteps: number[];
  cursor: Cursor;
  activation: LayerActivityJson;
  /** The seed everything random derives from (counter-based: no other RNG state exists). */
  seed: number;
}

export class AdapterTrainer {
  readonly model: LlamaModel;
  readonly task: ResolvedTask;
  readonly runtime: LoraRuntime;
  readonly layout: FlatLayout;
  readonly seed: number;
  readonly replica: number;
  readonly replicas: number;
  /** Per-layer CoTo activation counts over the run (restored with a checkpoint). */
  activation: LayerActivity;
  /** Optimiser steps completed. */
  step = 0;

  private readonly params: Float32Array;
  private readonly expAvg: Float32Array;
  private readonly expAvgSq: Float32Array;
  private readonly moduleSteps: Int32Array;
  private readonly data: BatchStream;
  private readonly evalExamples: TokenExample[];
  /** Variable of each A/B block with its flat offset, for gradient download and updates. */
  private readonly blocks: ParamBlock[];
  private readonly numLayers: number;
  private readonly padId: number;
  private readonly objective: Objective;
  /** lora.sparsity's pruned entries and lora.split's idle groups (null: neither). */
  readonly frozen: FrozenEntries | null;
  readonly engine: EngineOptions;

  private constructor(opts: TrainerOptions, runtime: LoraRuntime) {
    this.model = opts.model;
    this.task = opts.task;
    this.runtime = runtime;
    this.seed = opts.seed ?? opts.task.seed;
    this.replica = opts.replica ?? 0;
    this.replicas = opts.replicas ?? 1;
    this.numLayers = opts.model.config.numHiddenLayers;
    const adapter = runtime.toAdapter();
    this.layout = FlatLayout.fromAdapter(adapter, this.numLayers);
    this.params = this.layout.flatten(adapter);
    this.expAvg = new Float32Array(this.layout.size);
    this.expAvgSq = new Float32Array(this.layout.size);
    this.moduleSteps = new Int32Array(this.layout.slots.length);
    this.activation = new LayerActivity(this.numLayers);
    const named = runtime.namedVariables();
    this.blocks = this.layout.slots.flatMap((s, slot) => [
      { variable: named.get(`${s.path}.lora_A`)!, offset: s.offset, length: s.aLength, slot },
      { variable: named.get(`${s.path}.lora_B`)!, offset: s.offset + s.aLength, length: s.bLength, slot },
    ]);
    const tr = opts.task.training;
    this.data = replicaBatchStream(opts.examples, {
      batchSize: tr.batchSize,
      seqLen: tr.seqLen,
      seed: this.seed,
      replica: this.replica,
      replicas: this.replicas,
      padId: opts.padId ?? 0,
      source: opts.task.data.train,
    });
    this.evalExamples = opts.evalExamples ?? [];
    this.padId = opts.padId ?? 0;
    this.objective = {
      samples: opts.task.lora.dropoutSamples ?? 1,
      rdropAlpha: opts.task.training.rdrop?.alpha ?? null,
    };
    const baseWeights = opts.model.weights.mode;
    this.engine = { ...ENGINE_DEFAULTS, ...opts.engine, baseWeights };
    if (baseWeights === 'streamed') this.engine.gradientCheckpointing = true;
    this.frozen = this.methodMasks(opts, adapter);
    if (this.engine.gradientCheckpointing && this.objective.rdropAlpha !== null) {
      throw new ChorusError(
        'trainer: training.rdrop compares two full forward passes and does not run with per-layer recomputation ' +
          '(set gradient_checkpointing: false and base_weights: resident, or drop rdrop)',
      );
    }
  }

  static create(opts: TrainerOptions): AdapterTrainer {
    const { replica = 0, replicas = 1 } = opts;
    if (
      !Number.isInteger(replicas) ||
      replicas < 1 ||
      !Number.isInteger(replica) ||
      replica < 0 ||
      replica >= replicas
    ) {
      throw new ChorusError(`trainer: replica ${replica} of ${replicas} is not valid`);
    }
    checkEngineOptions(opts.engine ?? {}, 'trainer');
    const problems = methodProblems(opts.task.lora, opts.task.training, { mode: 'gradients' }, (s, k) => `${s}.${k}`);
    if (problems.length > 0) throw new ChorusError(`trainer: ${problems.join('; ')}`);
    const config: LoraConfig = {
      ...opts.task.lora,
      targetModules: [...opts.task.lora.targetModules],
      ...(opts.baseModelName ? { baseModelNameOrPath: opts.baseModelName } : {}),
    };
    const seed = opts.seed ?? opts.task.seed;
    // Every replica initialises A from the job seed, so all replicas start from the same adapter.
    const runtime = opts.adapter
      ? LoraRuntime.fromAdapter(opts.model, opts.adapter)
      : LoraRuntime.create(opts.model, config, { seed: deriveSeed(seed, 0x10ad) });
    try {
      return new AdapterTrainer(opts, runtime);
    } catch (err) {
      runtime.dispose();
      throw err;
    }
  }

  /** lora.sparsity prunes the starting adapter here (docs/METHODS.md); lora.split draws per step. */
  private methodMasks(opts: TrainerOptions, adapter: LoraAdapter): FrozenEntries | null {
    const { sparsity, split } = this.task.lora;
    let pruned: Uint8Array | null = null;
    if (sparsity) {
      if ((sparsity.criterion ?? 'snip') === 'snip' && this.model.weights.mode === 'streamed') {
        throw new ChorusError(
          'trainer: lora.sparsity criterion snip differentiates the whole model once and needs resident base weights ' +
            '(set training.base_weights: resident, or use criterion magnitude or random)',
        );
      }
      const tr = this.task.training;
      // Batches from the whole training set under their own seed: the same in every replica.
      const stream = replicaBatchStream(opts.examples, {
        ...{ batchSize: tr.batchSize, seqLen: tr.seqLen, padId: this.padId, source: this.task.data.train },
        ...{ seed: deriveSeed(this.seed, 0x5a1), replica: 0, replicas: 1 },
      });
      const batches = () => Array.from({ length: sparsity.batches ?? 2 }, () => stream.next());
      const { model, runtime, layout, params, seed } = this;
      pruned = pruneMasks({ model, runtime, layout, params, sparsity, seed, batches });
      for (let i = 0; i < pruned.length; i++) if (pruned[i]) this.params[i] = 0;
      pushParams(this.blocks, this.layout, this.params, new Array<boolean>(this.numLayers).fill(true));
    }
    const ranks = this.layout.slots.map((s) => adapter.modules.get(s.path)!.rank);
    return FrozenEntries.of(this.layout, ranks, pruned, split ? { split, seed: deriveSeed(this.seed, 0x5b1) } : null);
  }

  /** CoTo's activation probability at optimiser step `step` (1 when CoTo is off). */
  probabilityAt(step: number): number {
    return probabilityAt(this.task.coto, step, this.task.training.steps);
  }

  /** The layers whose adapters train at optimiser step `step` (every layer when CoTo is off). */
  activeLayersAt(step: number): boolean[] {
    return activeLayersAt(this.task.coto, this.seed, step, this.task.training.steps, this.numLayers);
  }

  learningRateAt(step: number): number {
    return learningRate(step, this.task.training);
  }

  /**
   * Runs this replica's gradAccum micro-batches for optimiser step `step` (default: the next one)
   * and returns summed gradients. Consumes batches from the data stream.
   */
  computeGradients(step = this.step): GradientResult {
    return computeGradientSums(this.parts, step, this.activeLayersAt(step));
  }

  /**
   * Applies summed gradients (Σ over micro-batches and replicas) for optimiser step `step`:
   * mean = gradSums / tokens, global-norm clipping, AdamW with this step's learning rate, only on
   * the layers CoTo activated at `step`. Advances `this.step` to step + 1.
   */
  applyGradients(gradSums: Float32Array, tokens: number, step = this.step): ApplyResult {
    if (gradSums.length !== this.layout.size) {
      throw new ChorusError(`trainer: gradient has ${gradSums.length} values, the adapter has ${this.layout.size}`);
    }
    // Summed over replicas too: a NaN from any of them stops every one, before any update.
    checkGradientFinite(gradSums, this.layout.slots, step);
    const activeLayers = this.activeLayersAt(step);
    const lr = this.learningRateAt(step);
    const { gradNorm, clipCoef } = clippedAdamwStep(this.parts, gradSums, tokens, step, activeLayers, lr);
    if (tokens > 0) pushParams(this.blocks, this.layout, this.params, activeLayers);
    this.activation.record(activeLayers);
    this.step = step + 1;
    return { step, lr, gradNorm, clipCoef };
  }

  /** One optimiser step on this replica's data alone. */
  trainStep(): StepResult {
    const start = performance.now();
    const step = this.step;
    const g = this.computeGradients(step);
    const applied = this.applyGradients(g.gradSums, g.tokens, step);
    return {
      ...applied,
      loss: g.tokens > 0 ? g.lossSum / g.tokens : NaN,
      tokens: g.tokens,
      inputTokens: g.inputTokens,
      p: this.probabilityAt(step),
      activeLayers: g.activeLayers,
      seconds: (performance.now() - start) / 1000,
    };
  }

  /** The current adapter (a copy: plain typed arrays). */
  getAdapter(): LoraAdapter {
    return this.layout.unflattenInto(this.params, this.runtime.toAdapter());
  }

  /**
   * Replaces the adapter's values (e.g. a round's reconciled adapter). With resetMoments the Adam
   * moments and step counts start over; otherwise they carry on.
   */
  setAdapter(adapter: LoraAdapter, opts: { resetMoments?: boolean } = {}): void {
    this.runtime.load(adapter);
    this.layout.flatten(adapter, this.params);
    if (opts.resetMoments) {
      this.expAvg.fill(0);
      this.expAvgSq.fill(0);
      this.moduleSteps.fill(0);
    }
  }

  state(): TrainerState {
    return {
      step: this.step,
      params: this.params.slice(),
      expAvg: this.expAvg.slice(),
      expAvgSq: this.expAvgSq.slice(),
      moduleSteps: Array.from(this.moduleSteps),
      cursor: this.data.cursor,
      activation: this.activation.toJSON(),
      seed: this.seed,
    };
  }

  restore(s: TrainerState, source = 'trainer state'): void {
    const n = this.layout.size;
    for (const [name, arr] of [
      ['params', s.params],
      ['expAvg', s.expAvg],
      ['expAvgSq', s.expAvgSq],
    ] as const) {
      if (arr.length !== n)
        throw new ChorusError(`${source}: ${name} holds ${arr.length} values, the adapter has ${n}`);
    }
    if (s.moduleSteps.length !== this.layout.slots.length) {
      throw new ChorusError(
        `${source}: moduleSteps lists ${s.moduleSteps.length} modules, the adapter has ${this.layout.slots.length}`,
      );
    }
    if (s.seed !== this.seed)
      throw new ChorusError(`${source}: was trained with seed ${s.seed}, this run uses ${this.seed}`);
    const counts = LayerActivity.fromJSON(s.activation, `${source}: activation`);
    if (counts.numLayers !== this.numLayers) {
      throw new ChorusError(
        `${source}: activation counts are for ${counts.numLayers} layers, the model has ${this.numLayers}`,
      );
    }
    this.data.seek(s.cursor);
    this.params.set(s.params);
    this.expAvg.set(s.expAvg);
    this.expAvgSq.set(s.expAvgSq);
    this.moduleSteps.set(s.moduleSteps);
    this.activation = counts;
    this.step = s.step;
    pushParams(this.blocks, this.layout, this.params, new Array<boolean>(this.numLayers).fill(true));
  }

  /**
   * Mean next-token loss and argmax accuracy over the evaluation examples with every layer's
   * adapter on. maxBatches limits the number of batchSize batches (default: all).
   */
  evaluate(opts: { maxBatches?: number; examples?: TokenExample[] } = {}): EvalSummary {
    const tr = this.task.training;
    return evaluateExamples(this.model, this.runtime, opts.examples ?? this.evalExamples, {
      batchSize: tr.batchSize,
      seqLen: tr.seqLen,
      padId: this.padId,
      maxBatches: opts.maxBatches,
      attentionBlock: this.engine.attentionBlock,
      headChunkTokens: this.engine.headChunkTokens,
    });
  }

  dispose(): void {
    this.runtime.dispose();
  }

  /** What a step reads and updates (the arrays are this trainer's own). */
  private get parts(): StepParts {
    return {
      model: this.model,
      runtime: this.runtime,
      layout: this.layout,
      blocks: this.blocks,
      data: this.data,
      engine: this.engine,
      objective: this.objective,
      frozen: this.frozen,
      training: this.task.training,
      seed: this.seed,
      replica: this.replica,
      params: this.params,
      expAvg: this.expAvg,
      expAvgSq: this.expAvgSq,
      moduleSteps: this.moduleSteps,
    };
  }
}
