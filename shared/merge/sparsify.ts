// Entry-wise sparsification of one dense delta, as PEFT's merge_utils defines it:
//   magnitude: keep exactly floor(density · n) entries of largest |x| (PEFT's torch.topk); entries tied
//              at the threshold are kept in index order until the count is reached (deterministic);
//   random (DARE): keep each entry with probability density (one uniform draw per entry, row-major
//              order, from SplitMix32(seed)) and divide the kept ones by density.
// density ≥ 1 leaves the tensor untouched in both (PEFT returns it unpruned, without rescaling).
// Both are applied inside the merge's accumulation loop (combine.ts); this file finds the cut.
import { scratchF64, scratchU32 } from './scratch.ts';

/**
 * k-th largest value (k ≥ 1) of `values`, which is reordered in place. Iterative quickselect with a
 * median-of-three pivot: O(n) on average, no sort of 16M entries. Used for float64 values.
 */
export function kthLargestInPlace(values: Float64Array, k: number): number {
  if (k < 1 || k > values.length) throw new RangeError(`k=${k} out of 1..${values.length}`);
  let lo = 0;
  let hi = values.length - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const a = values[lo];
    const b = values[mid];
    const c = values[hi];
    const pivot = a > b ? (b > c ? b : a > c ? c : a) : a > c ? a : b > c ? c : b;
    // Three-way partition (descending): [> pivot | == pivot | < pivot]; equal runs end quickly.
    let lt = lo;
    let i = lo;
    let gt = hi;
    while (i <= gt) {
      const v = values[i];
      if (v > pivot) {
        values[i] = values[lt];
        values[lt] = v;
        lt++;
        i++;
      } else if (v < pivot) {
        values[i] = values[gt];
        values[gt] = v;
        gt--;
      } else i++;
    }
    if (target < lt) hi = lt - 1;
    else if (target > gt) lo = gt + 1;
    else return pivot;
  }
  return values[target];
}

/** What magnitude pruning keeps: entries with |x| > threshold, plus the first `ties` with |x| = threshold. */
export interface PruneCut {
  threshold: number;
  ties: number;
  /** How many entries have |x| = threshold (ties = equal: all of them are kept). */
  equal: number;
}

const bitsOf = new Uint32Array(1);
const floatOf = new Float32Array(bitsOf.buffer);

/**
 * The cut keeping the `keep` float32 entries of largest magnitude, by radix selection on the bit
 * patterns (|x| orders like its bits): one pass histograms the top 16 bits of every |x|, a second pass
 * the low 16 bits of the entries in the bucket that holds the cut. Two linear passes, no copy, no sort.
 */
function radixCutF32(x: Float32Array, keep: number): PruneCut {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const n = bits.length;
  const high = scratchU32('radix.high', 65536).fill(0);
  for (let i = 0; i < n; i++) high[(bits[i] & 0x7fffffff) >>> 16]++;
  let above = 0;
  let bucket = 65535;
  for (; bucket > 0 && above + high[bucket] < keep; bucket--) above += high[bucket];
  const low = scratchU32('radix.low', 65536).fill(0);
  for (let i = 0; i < n; i++) {
    const a = bits[i] & 0x7fffffff;
    if (a >>> 16 === bucket) low[a & 0xffff]++;
  }
  let tail = 65535;
  for (; tail > 0 && above + low[tail] < keep; tail--) above += low[tail];
  bitsOf[0] = ((bucket << 16) | tail) >>> 0;
  return { threshold: floatOf[0], ties: keep - above, equal: low[tail] };
}

/** The same cut for float64 values: quickselect on a scratch copy of |x|. */
function quickselectCutF64(x: Float64Array, keep: number): PruneCut {
  const abs = scratchF64('quickselect.abs', x.length);
  for (let i = 0; i < x.length; i++) abs[i] = Math.abs(x[i]);
  const t = kthLargestInPlace(abs, keep);
  let above = 0;
  let equal = 0;
  for (let i = 0; i < x.length; i++) {
    const a = Math.abs(x[i]);
    if (a > t) above++;
    else if (a === t) equal++;
  }
  return { threshold: t, ties: keep - above, equal };
}

/**
 * The magnitude cut keeping floor(density · n) entries of `x` (density in (0, 1)); nothing is kept
 * when that count is 0. Linear time in the entries for both precisions.
 */
export function magnitudeCut(x: Float32Array | Float64Array, density: number): PruneCut {
  const keep = Math.floor(density * x.length);
  if (keep <= 0) return { threshold: Infinity, ties: 0, equal: 0 };
  return x instanceof Float32Array ? radixCutF32(x, keep) : quickselectCutF64(x, keep);
}

export type MajoritySign = 'total' | 'frequency';
