// Llama forward pass in TensorFlow.js, numerically as Hugging Face's LlamaForCausalLM
// (RMSNorm in float32 with eps, rotate-half RoPE with rope_theta, grouped-query attention by
// repeating KV heads, causal mask, SwiGLU MLP, final norm, lm_head tied or not).
//
// Public API:
//   MODULE_NAMES, type ModuleName, modulePath(layer, name), moduleShape(config, name)
//   interface TensorData { shape: number[]; data: Float32Array }       (one named HF weight)
//   interface LoraProvider                                             (what LoraRuntime implements)
//   class LlamaModel
//     static fromTensors(config, Map<hfName, TensorData>, source?, { trainable? })
//                                                                      weights from an HF state dict
//     trainableVariables() → Map<hfName, tf.Variable>                  (trainable models only)
//     forward(inputIds int32 [B,T], { lora?, activeLayers?, training?, dropoutSeed? }) → logits [B,T,V]
//     toTensorMap() → Map<hfName, TensorData>                          (tied lm_head omitted, as HF saves)
//     dispose()
//   initRandomWeights(config, seed) → Map<hfName, TensorData>          HF init: N(0, 0.02), norms 1
//
// Base weights are plain (non-variable) tensors owned by the model and shared by every adapter:
// a LoraRuntime only adds its own small A/B variables. With { trainable: true } (full-parameter
// training, e.g. pretraining a small base) every weight is a trainable tf.Variable instead, the
// embedding lookup becomes a one-hot product (wasm has no gradient for gather) and the linear
// layers take gradients for their weights too; the frozen path is untouched by that mode. A layer whose activeLayers[l] is false runs
// without its LoRA (CoTo: skipped, not rescaled).
import { tf } from '../tensor/engine.ts';
import { ChorusError } from '../errors.ts';
import { fillNormal, deriveSeed } from '../tensor/random.ts';
import { bmm, linearT, matMul2d, oneHotEmbed } from '../tensor/ops.ts';
import { ropeInverseFrequencies, type LlamaConfig } from './config.ts';

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

export interface TensorData {
  shape: number[];
  data: Float32Array;
}

export interface LoraContext {
  training: boolean;
  /** Seed of this step's dropout masks; the provider derives one per module from it. */
  dropoutSeed?: number;
}

export interface LoraProvider {
  /** s·B(A(dropout(x))) for one module, [N, out]; null when the module has no adapter. */
  delta(layer: number, name: ModuleName, x: tf.Tensor2D, ctx: LoraContext): tf.Tensor2D | null;
}

export interface ModelOptions {
  /** Weights become trainable tf.Variables with gradients (full-parameter training). Default false. */
  trainable?: boolean;
}

export interface ForwardOptions {
  lora?: LoraProvider;
  /** Per layer: false skips that layer's LoRA entirely. Missing → every layer active. */
  activeLayers?: boolean[];
  /** Enables LoRA dropout. */
  training?: boolean;
  dropoutSeed?: number;
}

interface LayerWeights {
  inputNorm: tf.Tensor1D;
  postNorm: tf.Tensor1D;
  /** Transposed HF weights, [in, out]: the layout of wasm's fast matmul path (see tensor/ops.ts). */
  projT: Record<ModuleName, tf.Tensor2D>;
}

function expectedShapes(c: LlamaConfig): Map<string, number[]> {
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

export class LlamaModel {
  readonly config: LlamaConfig;
  private readonly embed: tf.Tensor2D;
  private readonly layers: LayerWeights[];
  private readonly finalNorm: tf.Tensor1D;
  /**
   * lm_head transposed, [hidden, vocab] (a transposed copy of the embedding when tied); null for a
   * trainable tied model, whose forward transposes the embedding variable itself so both uses train it.
   */
  private readonly lmHeadT: tf.Tensor2D | null;
  readonly trainable: boolean;
  private readonly ropeCache = new Map<number, { cos: tf.Tensor2D; sin: tf.Tensor2D; mask: tf.Tensor2D }>();
  /** [headDim, headDim] permutation that swaps the two halves of a row (x·P = [x2, x1]); lazily made. */
  private halfSwap: tf.Tensor2D | null = null;
  private disposed = false;

  private constructor(
    config: LlamaConfig,
    embed: tf.Tensor2D,
    layers: LayerWeights[],
    finalNorm: tf.Tensor1D,
    lmHeadT: tf.Tensor2D | null,
    trainable: boolean,
  ) {
    this.config = config;
    this.embed = embed;
    this.layers = layers;
    this.finalNorm = finalNorm;
    this.lmHeadT = lmHeadT;
    this.trainable = trainable;
  }

  /**
   * Builds a model from HF-named weights. Every expected tensor must be present with its exact
   * shape; extra tensors (e.g. rotary inv_freq buffers) are ignored. With tie_word_embeddings the
   * embedding doubles as lm_head, as HF ties them (a stored lm_head.weight is then ignored).
   */
  static fromTensors(
    config: LlamaConfig,
    weights: Map<string, TensorData>,
    source = 'model weights',
    opts: ModelOptions = {},
  ): LlamaModel {
    const shapes = expectedShapes(config);
    for (const [name, shape] of shapes) {
      const t = weights.get(name);
      if (!t) throw new ChorusError(`${source}: missing tensor ${name} (expected shape [${shape}])`);
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new ChorusError(`${source}: tensor ${name} has shape [${t.shape}], expected [${shape}] from config.json`);
      }
      const numel = shape.reduce((a, b) => a * b, 1);
      if (t.data.length !== numel) {
        throw new ChorusError(
          `${source}: tensor ${name} holds ${t.data.length} values, shape [${shape}] needs ${numel}`,
        );
      }
    }
    const trainable = opts.trainable ?? false;
    // A trainable weight is a variable named after its HF tensor (and the model, so two can coexist).
    const id = trainable ? nextModelId++ : 0;
    const own = <T extends tf.Tensor>(t: T, name: string): T => {
      if (!trainable) return t;
      const v = tf.variable(t, true, `chorus_model${id}/${name}`) as unknown as T;
      t.dispose();
      return v;
    };
    const get2 = (name: string) => {
      const t = weights.get(name)!;
      return own(tf.tensor2d(t.data, t.shape as [number, number], 'float32'), name);
    };
    const get2T = (name: string) => {
      const t = weights.get(name)!;
      return own(tf.tensor2d(transpose2d(t.data, t.shape[0], t.shape[1]), [t.shape[1], t.shape[0]], 'float32'), name);
    };
    const get1 = (name: string) => own(tf.tensor1d(weights.get(name)!.data, 'float32'), name);
    const embed = get2('model.embed_tokens.weight');
    const layers: LayerWeights[] = [];
    for (let l = 0; l < config.numHiddenLayers; l++) {
      const projT = {} as Record<ModuleName, tf.Tensor2D>;
      for (const name of MODULE_NAMES) projT[name] = get2T(`${modulePath(l, name)}.weight`);
      layers.push({
        inputNorm: get1(`model.layers.${l}.input_layernorm.weight`),
        postNorm: get1(`model.layers.${l}.post_attention_layernorm.weight`),
        projT,
      });
    }
    const finalNorm = get1('model.norm.weight');
    const lmHeadT = config.tieWordEmbeddings
      ? trainable
        ? null
        : get2T('model.embed_tokens.weight')
      : get2T('lm_head.weight');
    return new LlamaModel(config, embed, layers, finalNorm, lmHeadT, trainable);
  }

  /**
   * The trainable weights by HF name (a tied lm_head is the embedding, listed once). Linear weights
   * and lm_head are held transposed, [in, out]; embedding and norms as HF stores them.
   */
  trainableVariables(): Map<string, tf.Variable> {
    if (!this.trainable) throw new ChorusError('trainableVariables: the model was built without { trainable: true }');
    const out = new Map<string, tf.Variable>();
    const put = (name: string, t: tf.Tensor) => out.set(name, t as tf.Variable);
    put('model.embed_tokens.weight', this.embed);
    this.layers.forEach((w, l) => {
      put(`model.layers.${l}.input_layernorm.weight`, w.inputNorm);
      put(`model.layers.${l}.post_attention_layernorm.weight`, w.postNorm);
      for (const name of MODULE_NAMES) put(`${modulePath(l, name)}.weight`, w.projT[name]);
    });
    put('model.norm.weight', this.finalNorm);
    if (this.lmHeadT) put('lm_head.weight', this.lmHeadT);
    return out;
  }

  /** The weights as an HF state dict (lm_head omitted when tied, as HF's save_pretrained does). */
  toTensorMap(): Map<string, TensorData> {
    const out = new Map<string, TensorData>();
    const put = (name: string, t: tf.Tensor) =>
      out.set(name, { shape: t.shape.slice(), data: new Float32Array(t.dataSync() as Float32Array) });
    const putT = (name: string, t: tf.Tensor2D) => {
      const [r, c] = t.shape;
      out.set(name, { shape: [c, r], data: transpose2d(t.dataSync() as Float32Array, r, c) });
    };
    put('model.embed_tokens.weight', this.embed);
    this.layers.forEach((w, l) => {
      put(`model.layers.${l}.input_layernorm.weight`, w.inputNorm);
      put(`model.layers.${l}.post_attention_layernorm.weight`, w.postNorm);
      for (const name of MODULE_NAMES) putT(`${modulePath(l, name)}.weight`, w.projT[name]);
    });
    put('model.norm.weight', this.finalNorm);
    if (!this.config.tieWordEmbeddings) putT('lm_head.weight', this.lmHeadT!);
    return out;
  }

  /** A copy of one module's frozen base weight in HF layout [out, in]; the caller disposes it. */
  baseWeight(layer: number, name: ModuleName): tf.Tensor2D {
    return tf.transpose(this.layers[layer].projT[name]);
  }

  /** cos and signed sin tables [T, headDim], the additive causal mask [T, T]; cached per length. */
  private tables(seqLen: number) {
    let t = this.ropeCache.get(seqLen);
    if (t) return t;
    const d = this.config.headDim;
    const half = d / 2;
    const cos = new Float32Array(seqLen * d);
    const sin = new Float32Array(seqLen * d);
    const inv = ropeInverseFrequencies(this.config);
    for (let i = 0; i < half; i++) {
      // HF keeps inv_freq and position·inv_freq in float32.
      const invFreq = Math.fround(inv[i]);
      for (let p = 0; p < seqLen; p++) {
        const angle = Math.fround(p * invFreq);
        cos[p * d + i] = cos[p * d + i + half] = Math.cos(angle);
        // The sign of rotate_half's first half (−x2) is folded into the table; see rope().
        sin[p * d + i] = -Math.sin(angle);
        sin[p * d + i + half] = Math.sin(angle);
      }
    }
    const mask = new Float32Array(seqLen * seqLen);
    // A large finite negative (not -Infinity) so 0·mask stays finite in gradients; exp() of it is 0.
    for (let i = 0; i < seqLen; i++) for (let j = i + 1; j < seqLen; j++) mask[i * seqLen + j] = -1e9;
    t = tf.tidy(() => ({
      cos: tf.keep(tf.tensor2d(cos, [seqLen, d])),
      sin: tf.keep(tf.tensor2d(sin, [seqLen, d])),
      mask: tf.keep(tf.tensor2d(mask, [seqLen, seqLen])),
    }));
    this.ropeCache.set(seqLen, t);
    return t;
  }

  private rmsNorm(x: tf.Tensor, weight: tf.Tensor1D): tf.Tensor {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(weight, tf.mul(x, tf.rsqrt(tf.add(variance, this.config.rmsNormEps))));
  }

  private linear(
    x: tf.Tensor2D,
    layer: number,
    name: ModuleName,
    lora: LoraProvider | undefined,
    ctx: LoraContext,
  ): tf.Tensor2D {
    const wT = this.layers[layer].projT[name];
    const base = this.trainable ? matMul2d(x, wT) : linearT(x, wT);
    if (!lora) return base;
    const delta = lora.delta(layer, name, x, ctx);
    return delta ? (tf.add(base, delta) as tf.Tensor2D) : base;
  }

  /**
   * HF's q·cos + rotate_half(q)·sin with rotate_half(x) = [−x2, x1]: the halves are swapped by a
   * product with a 0/1 permutation matrix (exact, and on wasm a fast 2-D matmul where a reverse or
   * split + concat costs several ms) and the sign lives in `sin`.
   */
  private rope(x: tf.Tensor4D, cos: tf.Tensor2D, signedSin: tf.Tensor2D): tf.Tensor4D {
    const d = this.config.headDim;
    if (!this.halfSwap) {
      const p = new Float32Array(d * d);
      for (let i = 0; i < d; i++) p[i * d + ((i + d / 2) % d)] = 1;
      this.halfSwap = tf.keep(tf.tensor2d(p, [d, d]));
    }
    const swapped = tf.reshape(linearT(tf.reshape(x, [-1, d]) as tf.Tensor2D, this.halfSwap), x.shape);
    return tf.add(tf.mul(x, cos), tf.mul(swapped, signedSin)) as tf.Tensor4D;
  }

  /** Logits [B, T, V] for int32 token ids [B, T]. Call inside tf.tidy / variableGrads. */
  forward(inputIds: tf.Tensor, opts: ForwardOptions = {}): tf.Tensor3D {
    if (this.disposed) throw new Error('LlamaModel used after dispose()');
    const c = this.config;
    if (inputIds.rank !== 2)
      throw new ChorusError(`forward: input ids must be [batch, seq], got shape [${inputIds.shape}]`);
    const [B, T] = inputIds.shape as [number, number];
    if (opts.activeLayers && opts.activeLayers.length !== c.numHiddenLayers) {
      throw new ChorusError(
        `forward: activeLayers has ${opts.activeLayers.length} entries, the model has ${c.numHiddenLayers} layers`,
      );
    }
    const { cos, sin, mask } = this.tables(T);
    const nh = c.numAttentionHeads;
    const nkv = c.numKeyValueHeads;
    const hd = c.headDim;
    const group = nh / nkv;
    const ctx: LoraContext = { training: opts.training ?? false, dropoutSeed: opts.dropoutSeed };
    const ids = inputIds.dtype === 'int32' ? inputIds : tf.cast(inputIds, 'int32');

    const flatIds = tf.reshape(ids, [B * T]) as tf.Tensor1D;
    let h = (this.trainable ? oneHotEmbed(flatIds, this.embed) : tf.gather(this.embed, flatIds)) as tf.Tensor2D;
    for (let l = 0; l < c.numHiddenLayers; l++) {
      const w = this.layers[l];
      const lora = opts.lora && (opts.activeLayers ? opts.activeLayers[l] : true) ? opts.lora : undefined;
      const x = this.rmsNorm(h, w.inputNorm) as tf.Tensor2D;
      const heads = (t: tf.Tensor2D, n: number) =>
        tf.transpose(tf.reshape(t, [B, T, n, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
      const q = this.rope(heads(this.linear(x, l, 'q_proj', lora, ctx), nh), cos, sin);
      const k = this.rope(heads(this.linear(x, l, 'k_proj', lora, ctx), nkv), cos, sin);
      const v = heads(this.linear(x, l, 'v_proj', lora, ctx), nkv);
      // GQA as HF's repeat_kv (query head h reads KV head floor(h / group)) without copying K/V:
      // the `group` query heads of one KV head are stacked along the sequence axis.
      // 1/√d is applied to q ([T, d] per head) rather than to the scores ([T, T]): same product.
      const qGrouped = tf.reshape(tf.mul(q, 1 / Math.sqrt(hd)), [B, nkv, group * T, hd]);
      const scores = tf.reshape(bmm(qGrouped, tf.transpose(k, [0, 1, 3, 2])), [B, nh, T, T]);
      const probs = tf.softmax(tf.add(scores, mask), -1);
      const attn = tf.reshape(bmm(tf.reshape(probs, [B, nkv, group * T, T]), v), [B, nh, T, hd]);
      const merged = tf.reshape(tf.transpose(attn, [0, 2, 1, 3]), [B * T, nh * hd]) as tf.Tensor2D;
      h = tf.add(h, this.linear(merged, l, 'o_proj', lora, ctx)) as tf.Tensor2D;

      const y = this.rmsNorm(h, w.postNorm) as tf.Tensor2D;
      const gate = this.linear(y, l, 'gate_proj', lora, ctx);
      const up = this.linear(y, l, 'up_proj', lora, ctx);
      const act = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as tf.Tensor2D;
      h = tf.add(h, this.linear(act, l, 'down_proj', lora, ctx)) as tf.Tensor2D;
    }
    const normed = this.rmsNorm(h, this.finalNorm) as tf.Tensor2D;
    const logits = this.trainable
      ? matMul2d(normed, this.lmHeadT ?? (tf.transpose(this.embed) as tf.Tensor2D))
      : linearT(normed, this.lmHeadT!);
    return tf.reshape(logits, [B, T, c.vocabSize]) as tf.Tensor3D;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.embed.dispose();
    this.lmHeadT?.dispose();
    this.finalNorm.dispose();
    for (const w of this.layers) {
      w.inputNorm.dispose();
      w.postNorm.dispose();
      for (const name of MODULE_NAMES) w.projT[name].dispose();
    }
    for (const t of this.ropeCache.values()) {
      t.cos.dispose();
      t.sin.dispose();
      t.mask.dispose();
    }
    this.ropeCache.clear();
    this.halfSwap?.dispose();
    this.halfSwap = null;
  }
}

let nextModelId = 0;

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[base + c];
  }
  return out;
}

/**
 * HF-style random initialisation (LlamaPreTrainedModel._init_weights): linear and embedding
 * weights ~ N(0, initializer_range), RMSNorm weights 1. Each tensor draws from its own sub-seed so
 * the result does not depend on creation order.
 */
export function initRandomWeights(config: LlamaConfig, seed: number): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  let index = 0;
  for (const [name, shape] of expectedShapes(config)) {
    const numel = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(numel);
    if (name.endsWith('norm.weight')) data.fill(1);
    else fillNormal(data, deriveSeed(seed, index), config.initializerRange);
    out.set(name, { shape, data });
    index++;
  }
  return out;
}
