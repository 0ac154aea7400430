// Test fixtures: random tiny Llama weights (float32, shared by the engine and, upcast, by the
// float64 reference) and random LoRA adapters with non-zero B so LoRA changes the output.
import { llamaConfigToJson, makeLlamaConfig, parseLlamaConfig, type LlamaConfig } from '../../shared/model/config.ts';
import { MODULE_NAMES, modulePath, moduleShape, type ModuleName, type TensorData } from '../../shared/model/llama.ts';
import type { LoraAdapter, LoraModule } from '../../shared/lora/types.ts';
import { gaussian, lcg, type RefConfig, type RefLora, type RefWeights } from './reference.ts';

/** The 2-layer GQA shape (2 heads, 1 KV head) of the LoRA runtime, dropout and trainer tests. */
export const TWO_LAYER_GQA = {
  hiddenSize: 16,
  numHiddenLayers: 2,
  numAttentionHeads: 2,
  numKeyValueHeads: 1,
  vocabSize: 20,
  intermediateSize: 24,
};

export interface Fixture {
  config: LlamaConfig;
  tensors: Map<string, TensorData>;
  ref: RefConfig;
  refWeights: RefWeights;
}

export function makeFixture(
  p: Parameters<typeof makeLlamaConfig>[0],
  seed: number,
  ropeScaling?: Record<string, number | string>,
): Fixture {
  const config = ropeScaling
    ? parseLlamaConfig({ ...llamaConfigToJson(makeLlamaConfig(p)), rope_scaling: ropeScaling }, 'fixture')
    : makeLlamaConfig(p);
  const normal = gaussian(lcg(seed));
  const tensors = new Map<string, TensorData>();
  const add = (name: string, shape: number[], gen: () => number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors.set(name, { shape, data: Float32Array.from({ length: n }, gen) });
  };
  // Larger than HF's 0.02 init so attention is far from uniform and every term matters.
  add('model.embed_tokens.weight', [config.vocabSize, config.hiddenSize], () => normal());
  for (let l = 0; l < config.numHiddenLayers; l++) {
    add(`model.layers.${l}.input_layernorm.weight`, [config.hiddenSize], () => 1 + 0.2 * normal());
    add(`model.layers.${l}.post_attention_layernorm.weight`, [config.hiddenSize], () => 1 + 0.2 * normal());
    for (const name of MODULE_NAMES) {
      const { inFeatures, outFeatures } = moduleShape(config, name);
      add(`${modulePath(l, name)}.weight`, [outFeatures, inFeatures], () => (0.6 / Math.sqrt(inFeatures)) * normal());
    }
  }
  add('model.norm.weight', [config.hiddenSize], () => 1 + 0.2 * normal());
  if (!config.tieWordEmbeddings) add('lm_head.weight', [config.vocabSize, config.hiddenSize], () => 0.3 * normal());
  const refWeights: RefWeights = new Map([...tensors].map(([k, t]) => [k, Float64Array.from(t.data)]));
  const ref: RefConfig = {
    hidden: config.hiddenSize,
    intermediate: config.intermediateSize,
    layers: config.numHiddenLayers,
    heads: config.numAttentionHeads,
    kvHeads: config.numKeyValueHeads,
    headDim: config.headDim,
    vocab: config.vocabSize,
    eps: config.rmsNormEps,
    theta: config.ropeTheta,
    tie: config.tieWordEmbeddings,
    ropeScaling: ropeScaling ?? null,
  };
  return { config, tensors, ref, refWeights };
}

/** An adapter with random A and B (B ≠ 0), rank r, on the given modules of every layer. */
export function randomAdapter(
  config: LlamaConfig,
  targets: ModuleName[],
  r: number,
  alpha: number,
  seed: number,
): LoraAdapter {
  const normal = gaussian(lcg(seed));
  const modules = new Map<string, LoraModule>();
  for (let l = 0; l < config.numHiddenLayers; l++) {
    for (const name of targets) {
      const { inFeatures, outFeatures } = moduleShape(config, name);
      modules.set(modulePath(l, name), {
        a: Float32Array.from({ length: r * inFeatures }, () => normal() / Math.sqrt(inFeatures)),
        b: Float32Array.from({ length: outFeatures * r }, () => 0.3 * normal()),
        rank: r,
        inFeatures,
        outFeatures,
        scaling: alpha / r,
      });
    }
  }
  return {
    config: { r, loraAlpha: alpha, targetModules: targets, loraDropout: 0, useRslora: false },
    modules,
  };
}

export function refLoraOf(adapter: LoraAdapter): RefLora {
  const m: RefLora = new Map();
  for (const [path, mod] of adapter.modules) {
    m.set(path, { a: Float64Array.from(mod.a), b: Float64Array.from(mod.b), r: mod.rank, scaling: mod.scaling });
  }
  return m;
}

export function randomIds(vocab: number, batch: number, seq: number, seed: number): number[][] {
  const rand = lcg(seed);
  return Array.from({ length: batch }, () => Array.from({ length: seq }, () => Math.floor(rand() * vocab)));
}
