// Entry-wise sparsification of one dense delta, as PEFT's merge_utils defines it:
//   magnitude: keep exactly floor(density · n) entries of largest |x| (PEFT's torch.topk);
//   random (DARE): keep each entry with probability density and divide the kept ones by density.
// density ≥ 1 leaves the tensor untouched in both (PEFT returns it unpruned, without rescaling).
import { SplitMix32 } from '../tensor/random.ts';

/**
 * k-th largest value (k ≥ 1) of `values`, which is reordered in place. Iterative quickselect with a
 * median-of-three pivot: O(n) on average, no sort of 16M entries.
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

/** What magnitude pruning kept: entries with |x| > threshold, plus the first `ties` with |x| = threshold. */
export interface PruneCut {
  threshold: number;
  ties: number;
}

/**
 * Zeroes all but the floor(density·n) entries of largest magnitude, in place. Entries tied at the
 * threshold are kept in index order until the count is reached, so the result is deterministic.
 * `scratch` (length ≥ n) avoids an allocation per call. Returns the cut, which `applyCut` replays on
 * the same tensor without another selection.
 */
export function magnitudePruneInPlace(x: Float64Array, density: number, scratch?: Float64Array): PruneCut | undefined {
  if (density >= 1) return undefined;
  const n = x.length;
  const k = Math.floor(density * n);
  if (k <= 0) {
    x.fill(0);
    return { threshold: Infinity, ties: 0 };
  }
  const abs = scratch && scratch.length >= n ? scratch.subarray(0, n) : new Float64Array(n);
  for (let i = 0; i < n; i++) abs[i] = Math.abs(x[i]);
  const t = kthLargestInPlace(abs, k);
  let above = 0;
  for (let i = 0; i < n; i++) if (Math.abs(x[i]) > t) above++;
  const cut = { threshold: t, ties: k - above };
  applyCut(x, cut);
  return cut;
}

export function applyCut(x: Float64Array, cut: PruneCut | undefined): void {
  if (!cut) return;
  const t = cut.threshold;
  let tiesLeft = cut.ties;
  for (let i = 0; i < x.length; i++) {
    const a = Math.abs(x[i]);
    if (a > t) continue;
    if (a === t && tiesLeft > 0) {
      tiesLeft--;
      continue;
    }
    x[i] = 0;
  }
}

/**
 * DARE: keeps each entry with probability `density` (one uniform draw per entry, row-major order, from
 * a generator seeded with `seed`) and rescales kept entries by 1/density, in place. The same seed
 * always drops the same entries, which lets two passes over a module agree without storing a mask.
 */
export function randomPruneInPlace(x: Float64Array, density: number, seed: number): void {
  if (density >= 1) return;
  const rng = new SplitMix32(seed);
  const scale = 1 / density;
  for (let i = 0; i < x.length; i++) x[i] = rng.uniform() < density ? x[i] * scale : 0;
}

export type MajoritySign = 'total' | 'frequency';
