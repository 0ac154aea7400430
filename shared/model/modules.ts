// The names and shapes of a Llama checkpoint's tensors. Public API:
//   MODULE_NAMES, type ModuleName, isModuleName, modulePath(layer, name), moduleShape(config, name)
//   expectedShapes(config) → Map<HF tensor name, shape>   every tensor a model needs (lm_head only untied)
import type { LlamaConfig } from './config.ts';

export const MODULE_NAMES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type ModuleName = (typeof MODULE_NAMES)[number];

export function isModuleName(s: string): s is ModuleName {
  return (MODULE_NAMES as readonly string[]).includes(s);
}

/** HF module path, e.g. "model.layers.3.self_attn.q_proj" (PEFT keys add a prefix and suffix). */
export function modulePath(layer: number, name: ModuleName): string {
  const block = name === 'gate_proj' || name === 'up_proj' || name === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${name}`;
}

/** Input/output features of a linear module (HF weight shape is [out, in]). */
export function moduleShape(c: LlamaConfig, name: ModuleName): { inFeatures: number; outFeatures: number } {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  switch (name) {
    case 'q_proj':
      return { inFeatures: c.hiddenSize, outFeatures: q };
    case 'k_proj':
      return { inFeatures: c.hiddenSize, outFeatures: kv };
    case 'v_proj':
      return { inFeatures: c.hiddenSize, outFeatures: kv };
    case 'o_proj':
      return { inFeatures: q, outFeatures: c.hiddenSize };
    case 'gate_proj':
      return { inFeatures: c.hiddenSize, outFeatures: c.intermediateSize };
    case 'up_proj':
      return { inFeatures: c.hiddenSize, outFeatures: c.intermediateSize };
    case 'down_proj':
      return { inFeatures: c.intermediateSize, outFeatures: c.hiddenSize };
  }
}

export function expectedShapes(c: LlamaConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set('model.embed_tokens.weight', [c.vocabSize, c.hiddenSize]);
  for (let l = 0; l < c.numHiddenLayers; l++) {
    m.set(`model.layers.${l}.input_layernorm.weight`, [c.hiddenSize]);
    m.set(`model.layers.${l}.post_attention_layernorm.weight`, [c.hiddenSize]);
    for (const name of MODULE_NAMES) {
      const { inFeatures, outFeatures } = moduleShape(c, name);
      m.set(`${modulePath(l, name)}.weight`, [outFeatures, inFeatures]);
    }
  }
  m.set('model.norm.weight', [c.hiddenSize]);
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, c.hiddenSize]);
  return m;
}
