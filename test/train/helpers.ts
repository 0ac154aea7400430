// Shared fixtures for trainer tests: a tiny random Llama and a resolved task.
import { initEngine } from '../../shared/tensor/engine.ts';
import { makeLlamaConfig } from '../../shared/model/config.ts';
import { LlamaModel, initRandomWeights } from '../../shared/model/llama.ts';
import {
  DEFAULT_COTO,
  DEFAULT_LORA,
  DEFAULT_TRAINING,
  type ResolvedTask,
  type TrainingSpec,
} from '../../shared/spec/job-spec.ts';
import type { TrainExample } from '../../shared/train/batches.ts';
import { SplitMix32 } from '../../shared/tensor/random.ts';

export async function tinyModel(opts: { layers?: number; hidden?: number; vocab?: number; seed?: number } = {}) {
  await initEngine(process.env.CHORUS_TEST_BACKEND ?? 'wasm', { quiet: true });
  const config = makeLlamaConfig({
    hiddenSize: opts.hidden ?? 16,
    numHiddenLayers: opts.layers ?? 2,
    numAttentionHeads: 2,
    numKeyValueHeads: 1,
    vocabSize: opts.vocab ?? 32,
    intermediateSize: 32,
  });
  return LlamaModel.fromTensors(config, initRandomWeights(config, opts.seed ?? 7));
}

export function task(
  over: {
    training?: Partial<TrainingSpec>;
    lora?: Partial<ResolvedTask['lora']>;
    coto?: Partial<ResolvedTask['coto']>;
    seed?: number;
  } = {},
): ResolvedTask {
  return {
    name: 'test',
    baseModel: '/nowhere',
    data: { train: 'train.jsonl' },
    replicas: 1,
    seed: over.seed ?? 3,
    lora: { ...DEFAULT_LORA, r: 4, alpha: 8, ...over.lora },
    coto: { ...DEFAULT_COTO, ...over.coto },
    training: {
      ...DEFAULT_TRAINING,
      steps: 20,
      batch_size: 4,
      seq_len: 8,
      warmup_steps: 0,
      max_grad_norm: 0,
      ...over.training,
    },
  };
}

/** Random token sequences with loss on every token after the first. */
export function randomExamples(n: number, len: number, vocab: number, seed = 1): TrainExample[] {
  const rng = new SplitMix32(seed);
  return Array.from({ length: n }, () => ({
    inputIds: Int32Array.from({ length: len }, () => rng.next() % vocab),
    lossMask: Uint8Array.from({ length: len }, (_, t) => (t === 0 ? 0 : 1)),
  }));
}
