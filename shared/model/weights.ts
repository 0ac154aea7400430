// Where a model's frozen base weights live, and how a pass borrows them. Public API:
//   type WeightSource = TensorData | StoredTensor               one HF-named tensor as given
//   interface Lease<T> { value; release() }                     borrowed engine tensors
//   class BaseWeights
//     static build(config, Map<name, WeightSource>, source, { trainable?, baseWeights? })
//     mode: 'resident' | 'streamed'
//     embedRows(ids Int32Array) → [N, H]                        (trainable: a one-hot product with a gradient)
//     layer(l) → Lease<LayerWeights>                            projections transposed, [in, out]
//     headSlabs() → vocabulary ranges; headRows(i) → Lease<[Vs, H]> (lm_head as stored, or the tied embedding)
//     headT() → [H, V] transposed head of a trainable model (its own gradient path)
//     finalNorm, trainableVariables(), toTensorMap(), dispose()
// resident: every weight is a float32 engine tensor for the model's life (a lease's release is a no-op).
// streamed: projections, the embedding and lm_head stay on the host in their stored dtype (BF16/F16/F32);
// a lease widens one layer (or one vocabulary slab of the head) to float32 engine tensors, transposed on the
// host as it widens, and release() frees them, so the engine never holds more than one layer of the model.
// Norm weights are tiny and stay resident in both modes. A backward's transposes of these weights are made
// inside the leased layer's scope and die with it: no second copy of the model lives anywhere.
import { tf } from '../tensor/engine.ts';
import { ChorusError } from '../errors.ts';
import { StoredTensor } from '../tensor/stored.ts';
import { oneHotEmbed } from '../tensor/ops.ts';
import type { LlamaConfig } from './config.ts';
import { MODULE_NAMES, expectedShapes, modulePath, type ModuleName } from './modules.ts';
import type { LayerWeights } from './layer.ts';

export interface TensorData {
  shape: number[];
  data: Float32Array;
}

export type WeightSource = TensorData | StoredTensor;

export interface Lease<T> {
  value: T;
  release(): void;
}

export interface HeadSlab {
  start: number;
  end: number;
}

const keep = <T>(value: T): Lease<T> => ({ value, release: () => {} });
const own = <T extends tf.Tensor | tf.Tensor[]>(value: T): Lease<T> => ({ value, release: () => tf.dispose(value) });

/** A streamed head slab widens at most this many floats at once (64 MiB). */
const SLAB_FLOATS = 1 << 24;

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function widen(t: WeightSource): Float32Array {
  return t instanceof StoredTensor ? t.toFloat32() : t.data;
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[base + c];
  }
  return out;
}

function checkShapes(config: LlamaConfig, weights: Map<string, WeightSource>, source: string): void {
  for (const [name, shape] of expectedShapes(config)) {
    const t = weights.get(name);
    if (!t) throw new ChorusError(`${source}: missing tensor ${name} (expected shape [${shape}])`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ChorusError(`${source}: tensor ${name} has shape [${t.shape}], expected [${shape}] from config.json`);
    }
    const n = t instanceof StoredTensor ? t.size : t.data.length;
    if (n !== numel(shape)) {
      throw new ChorusError(`${source}: tensor ${name} holds ${n} values, shape [${shape}] needs ${numel(shape)}`);
    }
  }
}

let nextModelId = 0;

export class BaseWeights {
  readonly mode: 'resident' | 'streamed';
  readonly trainable: boolean;
  readonly finalNorm: tf.Tensor1D;
  private readonly config: LlamaConfig;
  private readonly norms: Array<{ inputNorm: tf.Tensor1D; postNorm: tf.Tensor1D }>;
  /** resident only */
  private readonly embed: tf.Tensor2D | null;
  private readonly projT: Array<Record<ModuleName, tf.Tensor2D>> | null;
  /**
   * resident lm_head: frozen untied → as stored [V, H]; frozen tied → null (the embedding serves);
   * trainable untied → transposed [H, V] (its gradient product's fast layout); trainable tied → null.
   */
  private readonly lmHead: tf.Tensor2D | null;
  /** streamed only: the host tensors by HF name */
  private readonly stored: Map<string, StoredTensor> | null;
  /** streamed only: vocabulary rows of one head slab */
  private readonly slabRows: number;

  private constructor(p: {
    config: LlamaConfig;
    mode: 'resident' | 'streamed';
    trainable: boolean;
    finalNorm: tf.Tensor1D;
    norms: BaseWeights['norms'];
    embed?: tf.Tensor2D;
    projT?: Array<Record<ModuleName, tf.Tensor2D>>;
    lmHead?: tf.Tensor2D | null;
    stored?: Map<string, StoredTensor>;
    slabRows?: number;
  }) {
    this.config = p.config;
    this.mode = p.mode;
    this.trainable = p.trainable;
    this.finalNorm = p.finalNorm;
    this.norms = p.norms;
    this.embed = p.embed ?? null;
    this.projT = p.projT ?? null;
    this.lmHead = p.lmHead ?? null;
    this.stored = p.stored ?? null;
    this.slabRows = p.slabRows ?? p.config.vocabSize;
  }

  /**
   * Checks every expected tensor (present, exact shape; extras such as rotary buffers are ignored) and
   * builds the weights. Resident widening goes one tensor at a time, so the host never holds a second
   * float32 copy of the model. With tie_word_embeddings the embedding doubles as lm_head.
   */
  static build(
    config: LlamaConfig,
    weights: Map<string, WeightSource>,
    source: string,
    opts: { trainable?: boolean; baseWeights?: 'resident' | 'streamed'; headSlabRows?: number } = {},
  ): BaseWeights {
    checkShapes(config, weights, source);
    const trainable = opts.trainable ?? false;
    const mode = opts.baseWeights ?? 'resident';
    if (trainable && mode === 'streamed') {
      throw new ChorusError(`${source}: a trainable (full-parameter) model cannot stream its weights`);
    }
    // A trainable weight is a variable named after its HF tensor (and the model, so two can coexist).
    const id = trainable ? nextModelId++ : 0;
    const ownT = <T extends tf.Tensor>(t: T, name: string): T => {
      if (!trainable) return t;
      const v = tf.variable(t, true, `chorus_model${id}/${name}`) as unknown as T;
      t.dispose();
      return v;
    };
    const get1 = (name: string) => ownT(tf.tensor1d(widen(weights.get(name)!), 'float32'), name);
    const get2 = (name: string) => {
      const t = weights.get(name)!;
      return ownT(tf.tensor2d(widen(t), t.shape as [number, number], 'float32'), name);
    };
    const get2T = (name: string) => {
      const t = weights.get(name)!;
      const [r, c] = t.shape;
      return ownT(tf.tensor2d(transpose2d(widen(t), r, c), [c, r], 'float32'), name);
    };
    const norms = Array.from({ length: config.numHiddenLayers }, (_, l) => ({
      inputNorm: get1(`model.layers.${l}.input_layernorm.weight`),
      postNorm: get1(`model.layers.${l}.post_attention_layernorm.weight`),
    }));
    const finalNorm = get1('model.norm.weight');
    if (mode === 'streamed') {
      const stored = new Map<string, StoredTensor>();
      for (const name of expectedShapes(config).keys()) {
        const t = weights.get(name)!;
        stored.set(name, t instanceof StoredTensor ? t : new StoredTensor('F32', t.shape, bytesOf(t.data), name));
      }
      const slabRows = opts.headSlabRows ?? Math.max(1, Math.floor(SLAB_FLOATS / config.hiddenSize));
      return new BaseWeights({ config, mode, trainable, finalNorm, norms, stored, slabRows });
    }
    const embed = get2('model.embed_tokens.weight');
    const projT = norms.map((_, l) => {
      const r = {} as Record<ModuleName, tf.Tensor2D>;
      for (const name of MODULE_NAMES) r[name] = get2T(`${modulePath(l, name)}.weight`);
      return r;
    });
    // A frozen head keeps HF's [V, H] layout: the logits go as (W·xᵀ)ᵀ (see tensor/ops.ts linearRows), so a
    // tied model needs no transposed copy of its embedding.
    const lmHead = config.tieWordEmbeddings ? null : trainable ? get2T('lm_head.weight') : get2('lm_head.weight');
    return new BaseWeights({ config, mode, trainable, finalNorm, norms, embed, projT, lmHead });
  }

  /** Embedding rows of the given token ids, [N, H]. */
  embedRows(ids: Int32Array): tf.Tensor2D {
    const H = this.config.hiddenSize;
    if (this.stored) {
      return tf.tensor2d(this.stored.get('model.embed_tokens.weight')!.gatherRowsToFloat32(ids), [ids.length, H]);
    }
    const flat = tf.tensor1d(ids, 'int32');
    const rows = this.trainable ? oneHotEmbed(flat, this.embed!) : (tf.gather(this.embed!, flat) as tf.Tensor2D);
    flat.dispose();
    return rows;
  }

  layer(l: number): Lease<LayerWeights> {
    const { inputNorm, postNorm } = this.norms[l];
    if (this.projT) return keep({ inputNorm, postNorm, projT: this.projT[l] });
    const projT = {} as Record<ModuleName, tf.Tensor2D>;
    for (const name of MODULE_NAMES) {
      const t = this.stored!.get(`${modulePath(l, name)}.weight`)!;
      const [r, c] = t.shape;
      projT[name] = tf.tensor2d(transpose2d(t.toFloat32(), r, c), [c, r], 'float32');
    }
    return { value: { inputNorm, postNorm, projT }, release: () => tf.dispose(Object.values(projT)) };
  }

  /** Vocabulary ranges the head is computed in: the whole vocabulary when resident. */
  headSlabs(): HeadSlab[] {
    const V = this.config.vocabSize;
    if (!this.stored) return [{ start: 0, end: V }];
    const out: HeadSlab[] = [];
    for (let s = 0; s < V; s += this.slabRows) out.push({ start: s, end: Math.min(V, s + this.slabRows) });
    return out;
  }

  /** The trainable model's head transposed, [H, V] (tied: a transposed view of the embedding variable, taped). */
  headT(): tf.Tensor2D {
    if (!this.trainable) throw new Error('headT: only a trainable model keeps a transposed head');
    return this.lmHead ?? (tf.transpose(this.embed!) as tf.Tensor2D);
  }

  /** lm_head rows of a slab as stored, [Vs, H] (the embedding when tied). Frozen models only. */
  headRows(slab: HeadSlab): Lease<tf.Tensor2D> {
    if (this.trainable) throw new Error('headRows: a trainable model keeps its head transposed');
    if (this.stored) {
      const rows = this.headStored().rowsToFloat32(slab.start, slab.end);
      return own(tf.tensor2d(rows, [slab.end - slab.start, this.config.hiddenSize], 'float32'));
    }
    return keep(this.lmHead ?? this.embed!);
  }

  private headStored(): StoredTensor {
    return this.stored!.get(this.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight')!;
  }

  /**
   * The trainable weights by HF name (a tied lm_head is the embedding, listed once). Linear weights
   * and lm_head are held transposed, [in, out]; embedding and norms as HF stores them.
   */
  trainableVariables(): Map<string, tf.Variable> {
    if (!this.trainable) throw new ChorusError('trainableVariables: the model was built without { trainable: true }');
    const out = new Map<string, tf.Variable>();
    const put = (name: string, t: tf.Tensor) => out.set(name, t as tf.Variable);
    put('model.embed_tokens.weight', this.embed!);
    this.norms.forEach((w, l) => {
      put(`model.layers.${l}.input_layernorm.weight`, w.inputNorm);
      put(`model.layers.${l}.post_attention_layernorm.weight`, w.postNorm);
      for (const name of MODULE_NAMES) put(`${modulePath(l, name)}.weight`, this.projT![l][name]);
    });
    put('model.norm.weight', this.finalNorm);
    if (this.lmHead) put('lm_head.weight', this.lmHead);
    return out;
  }

  /** The weights as an HF state dict in float32 (lm_head omitted when tied, as HF's save_pretrained does). */
  toTensorMap(): Map<string, TensorData> {
    const out = new Map<string, TensorData>();
    const put = (name: string, t: tf.Tensor) =>
      out.set(name, { shape: t.shape.slice(), data: new Float32Array(t.dataSync() as Float32Array) });
    const putT = (name: string, t: tf.Tensor2D) => {
      const [r, c] = t.shape;
      out.set(name, { shape: [c, r], data: transpose2d(t.dataSync() as Float32Array, r, c) });
    };
    this.norms.forEach((w, l) => {
      put(`model.layers.${l}.input_layernorm.weight`, w.inputNorm);
      put(`model.layers.${l}.post_attention_layernorm.weight`, w.postNorm);
    });
    put('model.norm.weight', this.finalNorm);
    if (this.stored) {
      for (const [name, t] of this.stored) {
        if (!out.has(name)) out.set(name, { shape: [...t.shape], data: t.toFloat32() });
      }
      return out;
    }
    put('model.embed_tokens.weight', this.embed!);
    this.projT!.forEach((p, l) => {
      for (const name of MODULE_NAMES) putT(`${modulePath(l, name)}.weight`, p[name]);
    });
    if (this.lmHead && this.trainable) putT('lm_head.weight', this.lmHead);
    else if (this.lmHead) put('lm_head.weight', this.lmHead);
    return out;
  }

  dispose(): void {
    tf.dispose([this.finalNorm, ...this.norms.flatMap((n) => [n.inputNorm, n.postNorm])]);
    if (this.embed) this.embed.dispose();
    if (this.lmHead) this.lmHead.dispose();
    for (const p of this.projT ?? []) tf.dispose(Object.values(p));
  }
}

function bytesOf(data: Float32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
