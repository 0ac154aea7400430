// Llama forward pass in TensorFlow.js, numerically as Hugging Face's LlamaForCausalLM
// (RMSNorm in float32 with eps, rotate-half RoPE with rope_theta, grouped-query attention by
// repeating KV heads, causal mask, SwiGLU MLP, final norm, lm_head tied or not).
//
// Public API:
//   MODULE_NAMES, type ModuleName, modulePath(layer, name), moduleShape(config, name)   (from modules.ts)
//   interface TensorData { shape: number[]; data: Float32Array }       (one named HF weight)
//   interface LoraProvider                                             (what LoraRuntime implements)
//   class LlamaModel
//     static fromTensors(config, Map<hfName, TensorData | StoredTensor>, source?, { trainable?, baseWeights? })
//                                                                      weights from an HF state dict
//     weights: BaseWeights                                             resident or streamed (weights.ts)
//     embed(ids Int32Array) → h [N, H];  runLayer(l, h, w, run) → h'   the pieces a layered pass drives
//     hidden(ids Int32Array, B, T, opts) → final hidden states before the final norm, [B·T, H]
//     forward(inputIds int32 [B,T], { lora?, activeLayers?, training?, dropoutSeed?, attentionBlock?, kvCache? })
//                                                                      → logits [B,T,V]
//     trainableVariables(), toTensorMap(), dispose()
//   initRandomWeights(config, seed) → Map<hfName, TensorData>          HF init: N(0, 0.02), norms 1
//   randomWeightSources(config, seed)                                  the same, drawn tensor by tensor
//
// Base weights are frozen tensors owned by the model and shared by every adapter: a LoraRuntime
// only adds its own small A/B variables. With { trainable: true } (full-parameter training, e.g.
// pretraining a small base) every weight is a trainable tf.Variable instead, the embedding lookup
// becomes a one-hot product (wasm has no gradient for gather) and the linear layers take gradients
// for their weights too. A layer whose activeLayers[l] is false runs without its LoRA (CoTo: skipped,
// not rescaled). With baseWeights 'streamed' every pass widens one layer at a time (see weights.ts).
import { tf } from '../tensor/engine.ts';
import { ChorusError } from '../errors.ts';
import { fillNormal, deriveSeed } from '../tensor/random.ts';
import { linearRows, matMul2d } from '../tensor/ops.ts';
import type { LlamaConfig } from './config.ts';
import { expectedShapes, type ModuleName } from './modules.ts';
import { decoderLayer, rmsNorm, RopeTables, type LayerWeights } from './layer.ts';
import { BaseWeights, type TensorData, type WeightSource } from './weights.ts';
import type { KvCache } from './kv-cache.ts';

export { MODULE_NAMES, isModuleName, modulePath, moduleShape, type ModuleName } from './modules.ts';
export type { TensorData } from './weights.ts';

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
  /** Where frozen weights live (default resident; see weights.ts). */
  baseWeights?: 'resident' | 'streamed';
  /** Streamed: vocabulary rows of the head widened at once (default: 64 MiB of float32). */
  headSlabRows?: number;
}

export interface ForwardOptions {
  lora?: LoraProvider;
  /** Per layer: false skips that layer's LoRA entirely. Missing → every layer active. */
  activeLayers?: boolean[];
  /** Enables LoRA dropout. */
  training?: boolean;
  dropoutSeed?: number;
  /** Attention in blocks of this many queries and keys (exact); undefined: dense scores. */
  attentionBlock?: number;
  /**
   * Incremental decoding (shared/model/kv-cache.ts): the ids continue the cached positions, attend
   * over them too, and their keys/values are appended. Inference only.
   */
  kvCache?: KvCache;
}

/** How one layer runs within a pass: the batch geometry and the per-pass options. */
export interface LayerRun extends ForwardOptions {
  batch: number;
  seqLen: number;
}

export class LlamaModel {
  readonly config: LlamaConfig;
  readonly weights: BaseWeights;
  private readonly rope: RopeTables;
  private disposed = false;

  private constructor(config: LlamaConfig, weights: BaseWeights) {
    this.config = config;
    this.weights = weights;
    this.rope = new RopeTables(config);
  }

  /**
   * Builds a model from HF-named weights (float32 arrays, or StoredTensors kept in their stored dtype).
   * Every expected tensor must be present with its exact shape; extra tensors (e.g. rotary inv_freq
   * buffers) are ignored. With tie_word_embeddings the embedding doubles as lm_head, as HF ties them
   * (a stored lm_head.weight is then ignored).
   */
  static fromTensors(
    config: LlamaConfig,
    weights: Map<string, WeightSource>,
    source = 'model weights',
    opts: ModelOptions = {},
  ): LlamaModel {
    return new LlamaModel(config, BaseWeights.build(config, weights, source, opts));
  }

  get trainable(): boolean {
    return this.weights.trainable;
  }

  /** The weights of the trainable model by HF name (linear weights and lm_head transposed, [in, out]). */
  trainableVariables(): Map<string, tf.Variable> {
    return this.weights.trainableVariables();
  }

  /** The weights as an HF state dict (lm_head omitted when tied, as HF's save_pretrained does). */
  toTensorMap(): Map<string, TensorData> {
    return this.weights.toTensorMap();
  }

  private checkUsable(): void {
    if (this.disposed) throw new Error('LlamaModel used after dispose()');
  }

  /** Embedding rows of token ids (row-major [B, T] flattened), [B·T, H]. */
  embed(ids: Int32Array): tf.Tensor2D {
    this.checkUsable();
    return this.weights.embedRows(ids);
  }

  /** Decoder layer l on h [B·T, H] with the given (leased) weights. */
  runLayer(l: number, h: tf.Tensor2D, w: LayerWeights, run: LayerRun): tf.Tensor2D {
    const active = run.activeLayers ? run.activeLayers[l] : true;
    return decoderLayer(h, w, {
      config: this.config,
      batch: run.batch,
      seqLen: run.seqLen,
      rope: this.rope,
      layer: l,
      lora: active ? run.lora : undefined,
      loraCtx: { training: run.training ?? false, dropoutSeed: run.dropoutSeed },
      trainable: this.trainable,
      attentionBlock: run.attentionBlock,
      kvCache: run.kvCache,
    });
  }

  /** The final norm of hidden states [N, H]. */
  finalNorm(h: tf.Tensor2D): tf.Tensor2D {
    return rmsNorm(h, this.weights.finalNorm, this.config.rmsNormEps) as tf.Tensor2D;
  }

  /**
   * Hidden states after the last decoder layer (before the final norm), [B·T, H]. Streamed weights are
   * leased per layer; taping gradients through it needs resident weights (a released layer's tensors
   * are gone by the time the backward would need them: shared/train/layered.ts recomputes instead).
   */
  hidden(ids: Int32Array, batch: number, seqLen: number, opts: ForwardOptions = {}): tf.Tensor2D {
    this.checkUsable();
    const c = this.config;
    if (ids.length !== batch * seqLen) {
      throw new ChorusError(`forward: ${ids.length} token ids for a ${batch}×${seqLen} batch`);
    }
    if (opts.activeLayers && opts.activeLayers.length !== c.numHiddenLayers) {
      throw new ChorusError(
        `forward: activeLayers has ${opts.activeLayers.length} entries, the model has ${c.numHiddenLayers} layers`,
      );
    }
    const run: LayerRun = { ...opts, batch, seqLen };
    if (opts.kvCache && opts.training) throw new ChorusError('forward: a KV cache is for inference, not training');
    // Without a gradient tape (evaluation, the layered trainer's forward) each layer runs in its own scope
    // and only its output survives, so memory holds one layer's activations, not the model's.
    const taping = tf.engine().state.activeTape != null;
    if (taping && this.weights.mode === 'streamed') {
      throw new ChorusError(
        'forward: gradients through streamed base weights need per-layer recomputation (gradient_checkpointing)',
      );
    }
    let h = this.embed(ids);
    for (let l = 0; l < c.numHiddenLayers; l++) {
      const lease = this.weights.layer(l);
      const prev = h;
      h = taping ? this.runLayer(l, h, lease.value, run) : tf.tidy(() => this.runLayer(l, prev, lease.value, run));
      lease.release();
      if (!taping) prev.dispose();
    }
    opts.kvCache?.advance(seqLen);
    return h;
  }

  /** Logits [B, T, V] for int32 token ids [B, T]. Call inside tf.tidy / variableGrads. */
  forward(inputIds: tf.Tensor, opts: ForwardOptions = {}): tf.Tensor3D {
    this.checkUsable();
    if (inputIds.rank !== 2)
      throw new ChorusError(`forward: input ids must be [batch, seq], got shape [${inputIds.shape}]`);
    const [B, T] = inputIds.shape as [number, number];
    const ids = Int32Array.from(inputIds.dataSync() as ArrayLike<number>);
    const normed = this.finalNorm(this.hidden(ids, B, T, opts));
    let logits: tf.Tensor2D;
    if (this.trainable) {
      // A trainable lm_head (or the embedding, tied) takes a gradient too.
      logits = matMul2d(normed, this.weights.headT());
    } else {
      const parts = this.weights.headSlabs().map((slab) => {
        const lease = this.weights.headRows(slab);
        const y = linearRows(normed, lease.value);
        if (this.weights.mode === 'streamed') lease.release();
        return y;
      });
      logits = parts.length === 1 ? parts[0] : (tf.concat(parts, 1) as tf.Tensor2D);
    }
    return tf.reshape(logits, [B, T, this.config.vocabSize]) as tf.Tensor3D;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.weights.dispose();
    this.rope.dispose();
  }
}

/**
 * HF-style random initialisation (LlamaPreTrainedModel._init_weights): linear and embedding
 * weights ~ N(0, initializer_range), RMSNorm weights 1. Each tensor draws from its own sub-seed so
 * the result does not depend on creation order.
 */
export function initRandomWeights(config: LlamaConfig, seed: number): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  for (const [name, t] of randomWeightSources(config, seed)) out.set(name, { shape: t.shape, data: t.data() });
  return out;
}

/** initRandomWeights, one tensor at a time: each `data()` draws that tensor (init-model writes GB-sized models this way). */
export function randomWeightSources(
  config: LlamaConfig,
  seed: number,
): Map<string, { shape: number[]; data: () => Float32Array }> {
  const out = new Map<string, { shape: number[]; data: () => Float32Array }>();
  let index = 0;
  for (const [name, shape] of expectedShapes(config)) {
    const numel = shape.reduce((a, b) => a * b, 1);
    const sub = deriveSeed(seed, index++);
    const data = () =>
      name.endsWith('norm.weight')
        ? new Float32Array(numel).fill(1)
        : fillNormal(new Float32Array(numel), sub, config.initializerRange);
    out.set(name, { shape, data });
  }
  return out;
}
