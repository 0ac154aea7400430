// An independent float64 implementation of Hugging Face's LlamaForCausalLM (plus PEFT LoRA) in
// plain JS loops, written from the HF modeling code and not sharing anything with
// shared/model/llama.ts, so the tests compare two implementations rather than one with itself.

export interface RefConfig {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  eps: number;
  theta: number;
  tie: boolean;
  /** HF rope_scaling as in config.json (snake_case), or null. */
  ropeScaling?: Record<string, number | string> | null;
}

/** HF's rope init functions (default, linear, llama3), transcribed with torch.where kept as-is. */
export function refInvFreq(cfg: RefConfig): number[] {
  const d = cfg.headDim;
  const inv: number[] = [];
  for (let j = 0; j < d; j += 2) inv.push(1 / cfg.theta ** (j / d));
  const rs = cfg.ropeScaling;
  if (!rs) return inv;
  const type = rs.rope_type ?? rs.type;
  const factor = rs.factor as number;
  if (type === 'linear') return inv.map((f) => f / factor);
  const oldLen = rs.original_max_position_embeddings as number;
  const lowF = rs.low_freq_factor as number;
  const highF = rs.high_freq_factor as number;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    let llama = wavelen > oldLen / lowF ? f / factor : f;
    const smooth = (oldLen / wavelen - lowF) / (highF - lowF);
    const smoothed = ((1 - smooth) * llama) / factor + smooth * llama;
    const medium = !(wavelen < oldLen / highF) && !(wavelen > oldLen / lowF);
    if (medium) llama = smoothed;
    return llama;
  });
}

/** HF-named weights as float64 arrays (row-major, Linear weights [out, in]). */
export type RefWeights = Map<string, Float64Array>;

/** LoRA per module path: A [r, in], B [out, r], scaling. */
export type RefLora = Map<string, { a: Float64Array; b: Float64Array; r: number; scaling: number }>;

/** y[o] = Σ_i W[o,i] x[i] */
function linear(w: Float64Array, x: Float64Array, out: number): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += w[o * n + i] * x[i];
    y[o] = s;
  }
  return y;
}

function proj(
  weights: RefWeights,
  lora: RefLora | undefined,
  path: string,
  x: Float64Array,
  out: number,
): Float64Array {
  const y = linear(weights.get(`${path}.weight`)!, x, out);
  const m = lora?.get(path);
  if (m) {
    const ax = linear(m.a, x, m.r);
    const bax = linear(m.b, ax, out);
    for (let o = 0; o < out; o++) y[o] += m.scaling * bax[o];
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ms = 0;
  for (const v of x) ms += v * v;
  ms /= x.length;
  const inv = 1 / Math.sqrt(ms + eps);
  return x.map((v, i) => w[i] * v * inv);
}

/** q·cos + rotate_half(q)·sin with rotate_half(x) = [-x2, x1], angles pos · inv_freq[i]. */
function rope(x: Float64Array, pos: number, d: number, invFreq: number[]): Float64Array {
  const half = d / 2;
  const y = new Float64Array(d);
  for (let i = 0; i < half; i++) {
    const ang = pos * invFreq[i];
    const c = Math.cos(ang);
    const s = Math.sin(ang);
    y[i] = x[i] * c - x[i + half] * s;
    y[i + half] = x[i + half] * c + x[i] * s;
  }
  return y;
}

/** Logits [T][V] of one sequence. activeLayers[l] = false drops layer l's LoRA. */
export function refForward(
  cfg: RefConfig,
  w: RefWeights,
  ids: number[],
  lora?: RefLora,
  activeLayers?: boolean[],
): Float64Array[] {
  const T = ids.length;
  const H = cfg.hidden;
  const hd = cfg.headDim;
  const emb = w.get('model.embed_tokens.weight')!;
  const invFreq = refInvFreq(cfg);
  let h: Float64Array[] = ids.map((id) => emb.slice(id * H, (id + 1) * H));
  for (let l = 0; l < cfg.layers; l++) {
    const p = `model.layers.${l}`;
    const lr = lora && (!activeLayers || activeLayers[l]) ? lora : undefined;
    const xs = h.map((v) => rmsNorm(v, w.get(`${p}.input_layernorm.weight`)!, cfg.eps));
    const q = xs.map((x, t) =>
      splitRope(proj(w, lr, `${p}.self_attn.q_proj`, x, cfg.heads * hd), cfg.heads, hd, t, invFreq),
    );
    const k = xs.map((x, t) =>
      splitRope(proj(w, lr, `${p}.self_attn.k_proj`, x, cfg.kvHeads * hd), cfg.kvHeads, hd, t, invFreq),
    );
    const v = xs.map((x) => proj(w, lr, `${p}.self_attn.v_proj`, x, cfg.kvHeads * hd));
    const group = cfg.heads / cfg.kvHeads;
    const attnOut = xs.map(() => new Float64Array(cfg.heads * hd));
    for (let head = 0; head < cfg.heads; head++) {
      const kvh = Math.floor(head / group);
      for (let t = 0; t < T; t++) {
        const scores: number[] = [];
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += q[t][head * hd + i] * k[s][kvh * hd + i];
          scores.push(dot / Math.sqrt(hd));
        }
        const mx = Math.max(...scores);
        const e = scores.map((z) => Math.exp(z - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let s = 0; s <= t; s++) {
          for (let i = 0; i < hd; i++) attnOut[t][head * hd + i] += (e[s] / z) * v[s][kvh * hd + i];
        }
      }
    }
    h = h.map((res, t) => {
      const o = proj(w, lr, `${p}.self_attn.o_proj`, attnOut[t], H);
      return res.map((r, i) => r + o[i]);
    });
    h = h.map((res) => {
      const y = rmsNorm(res, w.get(`${p}.post_attention_layernorm.weight`)!, cfg.eps);
      const g = proj(w, lr, `${p}.mlp.gate_proj`, y, cfg.intermediate);
      const u = proj(w, lr, `${p}.mlp.up_proj`, y, cfg.intermediate);
      const act = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
      const d = proj(w, lr, `${p}.mlp.down_proj`, act, H);
      return res.map((r, i) => r + d[i]);
    });
  }
  const head = cfg.tie ? emb : w.get('lm_head.weight')!;
  return h.map((x) => linear(head, rmsNorm(x, w.get('model.norm.weight')!, cfg.eps), cfg.vocab));
}

function splitRope(x: Float64Array, heads: number, hd: number, pos: number, invFreq: number[]): Float64Array {
  const out = new Float64Array(heads * hd);
  for (let h = 0; h < heads; h++) out.set(rope(x.subarray(h * hd, (h + 1) * hd), pos, hd, invFreq), h * hd);
  return out;
}

/** Mean next-token cross-entropy: target t (t ≥ 1, mask[b][t] = 1) predicted from logits at t−1. */
export function refLoss(
  cfg: RefConfig,
  w: RefWeights,
  batch: number[][],
  mask: number[][],
  lora?: RefLora,
  activeLayers?: boolean[],
): number {
  let sum = 0;
  let n = 0;
  batch.forEach((ids, b) => {
    const logits = refForward(cfg, w, ids, lora, activeLayers);
    for (let t = 1; t < ids.length; t++) {
      if (!mask[b][t]) continue;
      const row = logits[t - 1];
      const mx = Math.max(...row);
      const lse = mx + Math.log(row.reduce((a, z) => a + Math.exp(z - mx), 0));
      sum += lse - row[ids[t]];
      n++;
    }
  });
  return sum / Math.max(n, 1);
}

/** Small deterministic generator for test data (independent of shared/tensor/random.ts). */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export function gaussian(rand: () => number): () => number {
  return () => {
    const u = Math.max(rand(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
}
