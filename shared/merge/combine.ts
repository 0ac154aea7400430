// Entry-wise combination of K same-shaped tensors, PEFT's merge_utils semantics:
//   linear            Σ w_k x_k
//   magnitude_prune   Σ w_k trim(x_k)
//   dare_linear       Σ w_k dare(x_k)
//   ties / dare_ties  elect a sign per entry from the sparsified, UNweighted tensors ("total": sign
//                     of their sum, "frequency": sign of the sum of their signs; a tie counts as +),
//                     then Σ w_k x_k over the entries whose sign equals the elected one, divided by
//                     how many agree (at least 1). Zero entries never agree.
// One pass over the K tensors, each visited once (`visit(k, use)` hands it over and may free it
// afterwards), the sparsification applied inside the accumulation loop. For ties the election and the
// disjoint mean are fused: per entry the loop keeps the election sum and, separately for positive and
// negative entries, the weighted sum and the count, so the sign is decided at the end without a
// second pass over the tensors. Memory: the output plus (ties only) two sums and two counts.
import { SplitMix32 } from '../tensor/random.ts';
import { scratchF32, scratchF64, scratchU16, scratchU32, scratchU8 } from './scratch.ts';
import { magnitudeCut, type MajoritySign, type PruneCut } from './sparsify.ts';

export type EntrywiseKind = 'linear' | 'ties' | 'dare_linear' | 'dare_ties' | 'magnitude_prune';

export interface EntrywiseSpec {
  kind: EntrywiseKind;
  weights: number[];
  density: number;
  majoritySign: MajoritySign;
  /** One DARE seed per tensor. */
  seeds: number[];
}

type Values = Float32Array | Float64Array;
type Counts = Uint8Array | Uint16Array | Uint32Array;

/** Hands tensor k to `use` (values are read, never written) and cleans up after it returns. */
export type Visit = (k: number, use: (values: Values) => void) => void;

/** How one tensor is sparsified: a magnitude cut, a DARE mask, or not at all. */
type Keep = { cut: PruneCut } | { dare: { density: number; seed: number } } | null;

/** Combines the K tensors into `out` (zeroed here; its type sets the accumulation precision). */
export function combineEntrywise(count: number, out: Values, visit: Visit, spec: EntrywiseSpec): Values {
  const { kind, weights, density } = spec;
  const magnitude = (kind === 'ties' || kind === 'magnitude_prune') && density < 1;
  const random = (kind === 'dare_linear' || kind === 'dare_ties') && density < 1;
  const keepOf = (k: number, t: Values): Keep =>
    magnitude ? { cut: magnitudeCut(t, density) } : random ? { dare: { density, seed: spec.seeds[k] } } : null;
  out.fill(0);
  if (kind !== 'ties' && kind !== 'dare_ties') {
    for (let k = 0; k < count; k++) {
      if (weights[k] === 0) continue;
      visit(k, (t) => sparsify(t, keepOf(k, t), (i, v) => (out[i] += weights[k] * v), addAll(out, weights[k])));
    }
    return out;
  }
  const n = out.length;
  const f32 = out instanceof Float32Array;
  const acc: Election = {
    total: out,
    pos: (f32 ? scratchF32 : scratchF64)('ties.pos', n).fill(0),
    neg: (f32 ? scratchF32 : scratchF64)('ties.neg', n).fill(0),
    posCount: countArray('ties.posCount', n, count),
    negCount: countArray('ties.negCount', n, count),
  };
  for (let k = 0; k < count; k++) {
    visit(k, (t) => sparsify(t, keepOf(k, t), (i, v) => electOne(acc, weights[k], i, v), electAll(acc, weights[k])));
  }
  if (acc.total instanceof Float32Array && acc.pos instanceof Float32Array && acc.neg instanceof Float32Array) {
    disjointMeanF32(acc.total, acc.pos, acc.neg, acc.posCount, acc.negCount, spec.majoritySign === 'frequency');
  } else disjointMean(acc, spec.majoritySign === 'frequency');
  return out;
}

function countArray(key: string, n: number, count: number): Counts {
  const take = count < 256 ? scratchU8 : count < 65536 ? scratchU16 : scratchU32;
  return take(key, n).fill(0);
}

interface Election {
  /** Σ of the sparsified unweighted tensors (the "total" election); becomes the output. */
  total: Values;
  pos: Values;
  neg: Values;
  posCount: Counts;
  negCount: Counts;
}

/**
 * Applies t's sparsification: `bulk(t, scale, threshold)` adds every entry with |v| above the threshold
 * (≥ when every entry equal to it is kept) times scale, in one branch-free loop; `one` adds single
 * entries (DARE draws, and ties at the threshold when only some of them are kept).
 */
function sparsify(
  t: Values,
  keep: Keep,
  one: (i: number, v: number) => void,
  bulk: (t: Values, threshold: number, inclusive: boolean) => void,
): void {
  if (keep === null) return bulk(t, -1, false);
  if ('dare' in keep) {
    const rng = new SplitMix32(keep.dare.seed);
    const { density } = keep.dare;
    const scale = 1 / density;
    for (let i = 0; i < t.length; i++) if (rng.uniform() < density) one(i, t[i] * scale);
    return;
  }
  const { threshold, ties, equal } = keep.cut;
  if (ties > 0 && ties === equal) return bulk(t, threshold, true);
  bulk(t, threshold, false);
  // Only some of the entries tied at the threshold are kept: the first ones, in index order.
  for (let i = 0, left = ties; left > 0 && i < t.length; i++) {
    if (Math.abs(t[i]) === threshold) {
      one(i, t[i]);
      left--;
    }
  }
}

/** out += w · t over the entries above the threshold (branch-free: the keep test is a 0/1 factor). */
function addAll(out: Values, w: number) {
  return (t: Values, threshold: number, inclusive: boolean) => {
    const n = t.length;
    if (inclusive) for (let i = 0; i < n; i++) out[i] += w * t[i] * +(Math.abs(t[i]) >= threshold);
    else for (let i = 0; i < n; i++) out[i] += w * t[i] * +(Math.abs(t[i]) > threshold);
  };
}

function electOne(acc: Election, w: number, i: number, v: number): void {
  acc.total[i] += v;
  if (v > 0) {
    acc.pos[i] += w * v;
    acc.posCount[i]++;
  } else if (v < 0) {
    acc.neg[i] += w * v;
    acc.negCount[i]++;
  }
}

/**
 * Election sum, signed weighted sums and counts over the entries above the threshold. Branch-free:
 * the signs of random data defeat branch prediction, so kept/positive/negative are 0/1 factors.
 */
function electAll(acc: Election, w: number) {
  const { total, pos, neg, posCount, negCount } = acc;
  return (t: Values, threshold: number, inclusive: boolean) => {
    const n = t.length;
    for (let i = 0; i < n; i++) {
      const a = Math.abs(t[i]);
      const v = t[i] * +(inclusive ? a >= threshold : a > threshold);
      const p = +(v > 0);
      const q = +(v < 0);
      total[i] += v;
      pos[i] += w * v * p;
      neg[i] += w * v * q;
      posCount[i] += p;
      negCount[i] += q;
    }
  };
}

/** out = the mean of the weighted entries agreeing with the elected sign (reference form). */
function disjointMean(acc: Election, frequency: boolean): void {
  const { total: out, pos, neg, posCount, negCount } = acc;
  for (let i = 0; i < out.length; i++) {
    const positive = frequency ? posCount[i] >= negCount[i] : out[i] >= 0;
    const c = positive ? posCount[i] : negCount[i];
    const sum = positive ? pos[i] : neg[i];
    out[i] = c > 1 ? sum / c : sum;
  }
}

/** The same for float32 sums, selecting by bit masks (no branch on the elected sign). */
function disjointMeanF32(
  out: Float32Array,
  pos: Float32Array,
  neg: Float32Array,
  posCount: Counts,
  negCount: Counts,
  frequency: boolean,
): void {
  const outBits = new Int32Array(out.buffer, out.byteOffset, out.length);
  const posBits = new Int32Array(pos.buffer, pos.byteOffset, pos.length);
  const negBits = new Int32Array(neg.buffer, neg.byteOffset, neg.length);
  for (let i = 0; i < out.length; i++) {
    const positive = frequency ? +(posCount[i] >= negCount[i]) : +(out[i] >= 0);
    const mask = -positive | 0;
    const c = (posCount[i] & mask) | (negCount[i] & ~mask);
    outBits[i] = (posBits[i] & mask) | (negBits[i] & ~mask);
    out[i] /= c + +(c === 0);
  }
}
