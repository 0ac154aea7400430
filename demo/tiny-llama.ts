// Full-parameter training of a tiny Llama, used only to pretrain the demo's base model (the engine in
// shared/model keeps base weights frozen, as LoRA training wants). HF Llama semantics: RMSNorm,
// rotate-half RoPE, grouped-query attention, SwiGLU; weights keyed by their HF names, [out, in].
// The embedding lookup is a one-hot matmul because the wasm backend has no gradient for gather.
import { tf } from '../shared/tensor/engine.ts';
import { SplitMix32 } from '../shared/tensor/random.ts';

export interface TinyLlamaConfig {
  vocabSize: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ropeTheta: number;
  rmsEps: number;
}

export type Params = Map<string, tf.Variable>;

export function hfConfig(c: TinyLlamaConfig, maxPositions: number): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: c.vocabSize,
    hidden_size: c.hidden,
    intermediate_size: c.intermediate,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    head_dim: c.hidden / c.heads,
    hidden_act: 'silu',
    max_position_embeddings: maxPositions,
    rms_norm_eps: c.rmsEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
    torch_dtype: 'float32',
  };
}

export function shapes(c: TinyLlamaConfig): Map<string, number[]> {
  const hd = c.hidden / c.heads;
  const m = new Map<string, number[]>();
  m.set('model.embed_tokens.weight', [c.vocabSize, c.hidden]);
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}.`;
    m.set(p + 'input_layernorm.weight', [c.hidden]);
    m.set(p + 'self_attn.q_proj.weight', [c.heads * hd, c.hidden]);
    m.set(p + 'self_attn.k_proj.weight', [c.kvHeads * hd, c.hidden]);
    m.set(p + 'self_attn.v_proj.weight', [c.kvHeads * hd, c.hidden]);
    m.set(p + 'self_attn.o_proj.weight', [c.hidden, c.heads * hd]);
    m.set(p + 'post_attention_layernorm.weight', [c.hidden]);
    m.set(p + 'mlp.gate_proj.weight', [c.intermediate, c.hidden]);
    m.set(p + 'mlp.up_proj.weight', [c.intermediate, c.hidden]);
    m.set(p + 'mlp.down_proj.weight', [c.hidden, c.intermediate]);
  }
  m.set('model.norm.weight', [c.hidden]);
  m.set('lm_head.weight', [c.vocabSize, c.hidden]);
  return m;
}

/** Norms start at 1; matrices N(0, 0.02) like HF's initializer_range, o/down scaled by depth. */
export function initParams(c: TinyLlamaConfig, seed: number): Params {
  const rand = new SplitMix32(seed);
  const params: Params = new Map();
  for (const [name, shape] of shapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (shape.length === 1) data.fill(1);
    else {
      const std = /o_proj|down_proj/.test(name) ? 0.02 / Math.sqrt(2 * c.layers) : 0.02;
      for (let i = 0; i < n; i++) data[i] = rand.normal() * std;
    }
    params.set(name, tf.variable(tf.tensor(data, shape), true));
  }
  return params;
}

function rmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  const ms = tf.mean(tf.square(x), -1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), w);
}

// x · Wᵀ with explicit transposes, forward and backward: the wasm backend's matMul with
// transposeA/transposeB set runs about 10x slower than a transpose followed by a plain matMul.
const xwT = tf.customGrad((x, w, save) => {
  (save as tf.GradSaveFunc)([x as tf.Tensor2D, w as tf.Tensor2D]);
  return {
    value: tf.matMul(x as tf.Tensor2D, tf.transpose(w as tf.Tensor2D)),
    gradFunc: (dy, saved) => {
      const [xs, ws] = saved as tf.Tensor2D[];
      const g = dy as tf.Tensor2D;
      return [tf.matMul(g, ws), tf.matMul(tf.transpose(g), xs)];
    },
  };
});

/** x [.., in] · Wᵀ with W [out, in]. */
function linear(x: tf.Tensor, w: tf.Tensor): tf.Tensor {
  const shape = x.shape;
  const flat = tf.reshape(x, [-1, shape[shape.length - 1]]);
  const y = xwT(flat, w);
  return tf.reshape(y, [...shape.slice(0, -1), w.shape[0]]);
}

function ropeTables(T: number, hd: number, theta: number): { cos: tf.Tensor; sin: tf.Tensor } {
  const half = hd / 2;
  const cos = new Float32Array(T * hd);
  const sin = new Float32Array(T * hd);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const f = t / Math.pow(theta, (2 * i) / hd);
      cos[t * hd + i] = cos[t * hd + i + half] = Math.cos(f);
      sin[t * hd + i] = sin[t * hd + i + half] = Math.sin(f);
    }
  }
  return { cos: tf.tensor(cos, [1, 1, T, hd]), sin: tf.tensor(sin, [1, 1, T, hd]) };
}

function rotateHalf(x: tf.Tensor): tf.Tensor {
  const hd = x.shape[x.shape.length - 1];
  const [x1, x2] = tf.split(x, [hd / 2, hd / 2], -1);
  return tf.concat([tf.neg(x2), x1], -1);
}

/** Logits [B, T, V] for token ids [B, T]. */
export function forward(c: TinyLlamaConfig, p: Params, ids: number[][]): tf.Tensor {
  const B = ids.length;
  const T = ids[0].length;
  const hd = c.hidden / c.heads;
  const rep = c.heads / c.kvHeads;
  const P = (n: string) => p.get(n)!;
  const oneHot = tf.oneHot(tf.tensor2d(ids, [B, T], 'int32'), c.vocabSize).toFloat();
  let x = tf.reshape(tf.matMul(tf.reshape(oneHot, [B * T, c.vocabSize]), P('model.embed_tokens.weight')), [B, T, c.hidden]);
  const { cos, sin } = ropeTables(T, hd, c.ropeTheta);
  const mask = tf.linalg.bandPart(tf.ones([T, T]), -1, 0);
  const negBias = tf.mul(tf.sub(1, mask), -1e9).reshape([1, 1, T, T]);
  const heads = (t: tf.Tensor, n: number) => tf.transpose(tf.reshape(t, [B, T, n, hd]), [0, 2, 1, 3]);
  for (let l = 0; l < c.layers; l++) {
    const pre = `model.layers.${l}.`;
    const h = rmsNorm(x, P(pre + 'input_layernorm.weight'), c.rmsEps);
    let q = heads(linear(h, P(pre + 'self_attn.q_proj.weight')), c.heads);
    let k = heads(linear(h, P(pre + 'self_attn.k_proj.weight')), c.kvHeads);
    let v = heads(linear(h, P(pre + 'self_attn.v_proj.weight')), c.kvHeads);
    q = tf.add(tf.mul(q, cos), tf.mul(rotateHalf(q), sin));
    k = tf.add(tf.mul(k, cos), tf.mul(rotateHalf(k), sin));
    if (rep > 1) {
      // repeat_kv: query head h reads kv head floor(h / rep).
      // (concat, not a rank-5 tile: tfjs has no gradient for the latter)
      const repeat = (t: tf.Tensor) => tf.concat(tf.split(t, c.kvHeads, 1).flatMap((part) => new Array<tf.Tensor>(rep).fill(part)), 1);
      k = repeat(k);
      v = repeat(v);
    }
    const scores = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(hd)), negBias);
    const att = tf.matMul(tf.softmax(scores, -1), v);
    const merged = tf.reshape(tf.transpose(att, [0, 2, 1, 3]), [B, T, c.heads * hd]);
    x = tf.add(x, linear(merged, P(pre + 'self_attn.o_proj.weight')));
    const h2 = rmsNorm(x, P(pre + 'post_attention_layernorm.weight'), c.rmsEps);
    const gate = linear(h2, P(pre + 'mlp.gate_proj.weight'));
    const up = linear(h2, P(pre + 'mlp.up_proj.weight'));
    x = tf.add(x, linear(tf.mul(tf.mul(gate, tf.sigmoid(gate)), up), P(pre + 'mlp.down_proj.weight')));
  }
  x = rmsNorm(x, P('model.norm.weight'), c.rmsEps);
  return linear(x, P('lm_head.weight'));
}

/** Mean cross-entropy of next-token predictions where weights[b][t] = 1 (the target at t+1). */
export function lossOf(logits: tf.Tensor, ids: number[][], weights: number[][]): tf.Scalar {
  const [B, T, V] = logits.shape;
  const targets: number[][] = ids.map((row) => [...row.slice(1), 0]);
  const logp = tf.logSoftmax(logits, -1);
  const onehot = tf.oneHot(tf.tensor2d(targets, [B, T], 'int32'), V).toFloat();
  const nll = tf.neg(tf.sum(tf.mul(logp, onehot), -1));
  const w = tf.tensor2d(weights, [B, T]);
  return tf.div(tf.sum(tf.mul(nll, w)), tf.maximum(tf.sum(w), 1)) as tf.Scalar;
}
