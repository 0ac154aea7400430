// Deterministic, backend-independent random numbers for initialisation (model weights, LoRA A).
// Public API:
//   class SplitMix32(seed)  .next() → uint32, .uniform() → [0,1), .normal() → N(0,1)
//   fillNormal(out, seed, std), fillUniform(out, seed, lo, hi)
// tfjs's own seeded ops differ between backends; drawing in plain JS makes a seed mean the same
// weights on cpu, wasm and tensorflow, and in every process.

export class SplitMix32 {
  private state: number;
  private spare: number | null = null;

  constructor(seed: number) {
    // Fold a float/large seed into 32 bits without losing its high part.
    const hi = Math.floor(seed / 4294967296) | 0;
    this.state = (seed | 0) ^ Math.imul(hi, 0x9e3779b9);
  }

  /** The generator's state before its first draw (fillNormal runs the same steps inline). */
  seedState(): number {
    return this.state;
  }

  /** Mulberry32-style step: 32-bit state, full period, good enough for weight init. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1) with 53 bits from two draws. */
  uniform(): number {
    const hi = this.next() >>> 5;
    const lo = this.next() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Standard normal by Box–Muller (the second value is kept for the next call). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}

/**
 * out[i] = mean + std · N(0,1), the same values as successive SplitMix32(seed).normal() calls, drawn a
 * Box–Muller pair at a time with the generator inlined: a BF16 Llama-3.2-1B (1.24B draws) is mostly this
 * loop in `chorus init-model`, and the call-per-value form was ~2× slower.
 */
export function fillNormal(out: Float32Array, seed: number, std: number, mean = 0): Float32Array {
  let state = new SplitMix32(seed).seedState();
  const next = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const uniform = () => ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
  const n = out.length;
  for (let i = 0; i < n; i += 2) {
    let u = 0;
    while (u === 0) u = uniform();
    const v = uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    const angle = 2 * Math.PI * v;
    out[i] = mean + std * (r * Math.cos(angle));
    if (i + 1 < n) out[i + 1] = mean + std * (r * Math.sin(angle));
  }
  return out;
}

export function fillUniform(out: Float32Array, seed: number, lo: number, hi: number): Float32Array {
  const rng = new SplitMix32(seed);
  const span = hi - lo;
  for (let i = 0; i < out.length; i++) out[i] = lo + span * rng.uniform();
  return out;
}

/** Derives an independent sub-seed from a seed and a list of integers (e.g. layer, module). */
export function deriveSeed(seed: number, ...parts: number[]): number {
  let h = new SplitMix32(seed).next();
  for (const p of parts) h = new SplitMix32((h ^ Math.imul(p + 1, 0x85ebca6b)) >>> 0).next();
  return h;
}
