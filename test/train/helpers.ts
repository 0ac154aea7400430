// Shared fixtures for trainer tests: a tiny random Llama and a resolved task.
import { initEngine } from '../../shared/tensor/engine.ts';
import { makeLlamaConfig } from '../../shared/model/config.ts';
import { LlamaModel, initRandomWeights } from '../../shared/model/llama.ts';
import { COTO_DEFAULTS, type CotoSchedule } from '../../shared/coto/schedule.ts';
import type { TokenExample } from '../../shared/data/batches.ts';
import type { ResolvedTask } from '../../shared/job/types.ts';
import { LORA_DEFAULTS, type LoraConfig } from '../../shared/lora/types.ts';
import { TRAINING_DEFAULTS, type TrainingSettings } from '../../shared/train/settings.ts';
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

/** A task with small defaults; `coto: null` is plain LoRA. */
export function task(
  over: {
    training?: Partial<TrainingSettings>;
    lora?: Partial<LoraConfig>;
    coto?: Partial<CotoSchedule> | null;
    seed?: number;
  } = {},
): ResolvedTask {
  return {
    name: 'test',
    baseModel: '/nowhere',
    data: { train: 'train.jsonl' },
    replicas: 1,
    seed: over.seed ?? 3,
    lora: { ...LORA_DEFAULTS, r: 4, loraAlpha: 8, ...over.lora },
    coto: over.coto === null ? null : { ...COTO_DEFAULTS, ...over.coto },
    training: {
      ...TRAINING_DEFAULTS,
      steps: 20,
      batchSize: 4,
      seqLen: 8,
      warmupSteps: 0,
      maxGradNorm: 0,
      ...over.training,
    },
  };
}

/** Random token sequences with loss on every token after the first. */
export function randomExamples(n: number, len: number, vocab: number, seed = 1): TokenExample[] {
  const rng = new SplitMix32(seed);
  return Array.from({ length: n }, () => ({
    inputIds: Int32Array.from({ length: len }, () => rng.next() % vocab),
    lossMask: Uint8Array.from({ length: len }, (_, t) => (t === 0 ? 0 : 1)),
  }));
}

/** Sequences of lengths in [minLen, maxLen] whose first 1–3 targets are masked (a "prompt"). */
export function variableExamples(n: number, minLen: number, maxLen: number, vocab: number, seed = 1): TokenExample[] {
  const rng = new SplitMix32(seed);
  return Array.from({ length: n }, () => {
    const len = minLen + (rng.next() % (maxLen - minLen + 1));
    const prompt = 1 + (rng.next() % 3);
    return {
      inputIds: Int32Array.from({ length: len }, () => rng.next() % vocab),
      lossMask: Uint8Array.from({ length: len }, (_, t) => (t === 0 || t < prompt ? 0 : 1)),
    };
  });
}
