// One Llama decoder layer as a pure function of its input and weights, numerically as HF's
// LlamaDecoderLayer (RMSNorm in float32 with eps, rotate-half RoPE, grouped-query causal attention,
// SwiGLU MLP, two residuals). Public API:
//   interface LayerWeights { inputNorm, postNorm, projT }            one layer's frozen weights
//   class RopeTables       cos/sin tables, causal masks and the half-swap matrix, cached per length
//   rmsNorm(x, weight, eps)
//   decoderLayer(h [B·T, H], w, ctx) → h' [B·T, H]
// Being a function of (h, weights, LoRA variables) only is what lets the trainer recompute a layer in
// the backward (shared/train/layered.ts) and get the same values the forward had.
import { tf } from '../tensor/engine.ts';
import { linearT, matMul2d } from '../tensor/ops.ts';
import { ropeInverseFrequencies, type LlamaConfig } from './config.ts';
import { attention, causalMask } from './attention.ts';
import type { LoraContext, LoraProvider, ModuleName } from './llama.ts';
import type { KvCache } from './kv-cache.ts';

export interface LayerWeights {
  inputNorm: tf.Tensor1D;
  postNorm: tf.Tensor1D;
  /** Transposed HF weights, [in, out]: the layout of wasm's fast matmul path (see tensor/ops.ts). */
  projT: Record<ModuleName, tf.Tensor2D>;
}

/** Per-length constants every layer shares; the owner disposes them. */
export class RopeTables {
  private readonly cache = new Map<number, { cos: tf.Tensor2D; sin: tf.Tensor2D }>();
  private readonly masks = new Map<number, tf.Tensor2D>();
  /** [headDim, headDim] permutation that swaps the two halves of a row (x·P = [x2, x1]); lazily made. */
  private swap: tf.Tensor2D | null = null;

  constructor(private readonly config: LlamaConfig) {}

  /** cos and signed sin tables [T, headDim]. */
  tables(seqLen: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    let t = this.cache.get(seqLen);
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
    t = tf.tidy(() => ({ cos: tf.keep(tf.tensor2d(cos, [seqLen, d])), sin: tf.keep(tf.tensor2d(sin, [seqLen, d])) }));
    this.cache.set(seqLen, t);
    return t;
  }

  /** The additive causal mask [T, T] of the dense attention path. */
  mask(seqLen: number): tf.Tensor2D {
    let m = this.masks.get(seqLen);
    if (!m) {
      m = tf.keep(causalMask(seqLen));
      this.masks.set(seqLen, m);
    }
    return m;
  }

  halfSwap(): tf.Tensor2D {
    if (!this.swap) {
      const d = this.config.headDim;
      const p = new Float32Array(d * d);
      for (let i = 0; i < d; i++) p[i * d + ((i + d / 2) % d)] = 1;
      this.swap = tf.keep(tf.tensor2d(p, [d, d]));
    }
    return this.swap;
  }

  dispose(): void {
    for (const t of this.cache.values()) tf.dispose([t.cos, t.sin]);
    for (const m of this.masks.values()) m.dispose();
    this.cache.clear();
    this.masks.clear();
    this.swap?.dispose();
    this.swap = null;
  }
}

export function rmsNorm(x: tf.Tensor, weight: tf.Tensor1D, eps: number): tf.Tensor {
  const variance = tf.mean(tf.square(x), -1, true);
  return tf.mul(weight, tf.mul(x, tf.rsqrt(tf.add(variance, eps))));
}

export interface LayerContext {
  config: LlamaConfig;
  batch: number;
  seqLen: number;
  rope: RopeTables;
  layer: number;
  /** Absent: the layer runs without LoRA (no adapter, or CoTo left it inactive this step). */
  lora?: LoraProvider;
  loraCtx: LoraContext;
  /** Base weights are variables that train (full-parameter mode): products take weight gradients. */
  trainable: boolean;
  /** Attention block size (undefined: dense). */
  attentionBlock?: number;
  /** Decoding: the T new positions follow kvCache.length cached ones, whose keys/values join attention. */
  kvCache?: KvCache;
}

/** cos/sin rows and causal-mask rows [T, past+T] of positions past..past+T−1. */
function positions(rope: RopeTables, past: number, T: number, dense: boolean) {
  const { cos, sin } = rope.tables(past + T);
  const mask = dense ? rope.mask(past + T) : undefined;
  if (past === 0) return { cos, sin, mask };
  return {
    cos: tf.slice(cos, [past, 0], [T, -1]) as tf.Tensor2D,
    sin: tf.slice(sin, [past, 0], [T, -1]) as tf.Tensor2D,
    mask: mask && (tf.slice(mask, [past, 0], [T, -1]) as tf.Tensor2D),
  };
}

/**
 * HF's q·cos + rotate_half(q)·sin with rotate_half(x) = [−x2, x1]: the halves are swapped by a
 * product with a 0/1 permutation matrix (exact, and on wasm a fast 2-D matmul where a reverse or
 * split + concat costs several ms) and the sign lives in `sin`.
 */
function rope(x: tf.Tensor4D, cos: tf.Tensor2D, signedSin: tf.Tensor2D, swap: tf.Tensor2D): tf.Tensor4D {
  const d = swap.shape[0];
  const swapped = tf.reshape(linearT(tf.reshape(x, [-1, d]) as tf.Tensor2D, swap), x.shape);
  return tf.add(tf.mul(x, cos), tf.mul(swapped, signedSin)) as tf.Tensor4D;
}

function linear(x: tf.Tensor2D, w: LayerWeights, name: ModuleName, ctx: LayerContext): tf.Tensor2D {
  const wT = w.projT[name];
  const base = ctx.trainable ? matMul2d(x, wT) : linearT(x, wT);
  const delta = ctx.lora?.delta(ctx.layer, name, x, ctx.loraCtx);
  return delta ? (tf.add(base, delta) as tf.Tensor2D) : base;
}

export function decoderLayer(h: tf.Tensor2D, w: LayerWeights, ctx: LayerContext): tf.Tensor2D {
  const c = ctx.config;
  const [B, T] = [ctx.batch, ctx.seqLen];
  const hd = c.headDim;
  const block = ctx.kvCache ? undefined : ctx.attentionBlock; // decoding steps are one query: dense
  const dense = block === undefined || block >= T;
  const { cos, sin, mask } = positions(ctx.rope, ctx.kvCache?.length ?? 0, T, dense);
  const swap = ctx.rope.halfSwap();
  const x = rmsNorm(h, w.inputNorm, c.rmsNormEps) as tf.Tensor2D;
  const heads = (t: tf.Tensor2D, n: number) => tf.transpose(tf.reshape(t, [B, T, n, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
  const q = rope(heads(linear(x, w, 'q_proj', ctx), c.numAttentionHeads), cos, sin, swap);
  let k = rope(heads(linear(x, w, 'k_proj', ctx), c.numKeyValueHeads), cos, sin, swap);
  let v = heads(linear(x, w, 'v_proj', ctx), c.numKeyValueHeads);
  if (ctx.kvCache) ({ k, v } = ctx.kvCache.extend(ctx.layer, k, v));
  const attn = attention(q, k, v, dense ? { mask } : { block });
  const merged = tf.reshape(tf.transpose(attn, [0, 2, 1, 3]), [B * T, c.numAttentionHeads * hd]) as tf.Tensor2D;
  const h1 = tf.add(h, linear(merged, w, 'o_proj', ctx)) as tf.Tensor2D;

  const y = rmsNorm(h1, w.postNorm, c.rmsNormEps) as tf.Tensor2D;
  const gate = linear(y, w, 'gate_proj', ctx);
  const up = linear(y, w, 'up_proj', ctx);
  const act = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as tf.Tensor2D;
  return tf.add(h1, linear(act, w, 'down_proj', ctx)) as tf.Tensor2D;
}
