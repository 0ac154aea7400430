// Turning a merged ΔW (as an SVD, or dense) back into LoRA factors B·A with a chosen scaling.
import type { LoraModule } from '../lora/types.ts';
import type { Svd } from './linalg.ts';
import { SplitMix32 } from '../tensor/random.ts';

/**
 * How the singular values are shared between B and A (B·A·scaling = Σ σ_j u_j v_jᵀ):
 *  - 'sqrt'   √(σ/scaling) on each side (default: balanced factors, our merges);
 *  - 'b'      σ/scaling on B, A = Vᵀ (PEFT's *_svd paths: `U @ diag(S)`, `Vh`);
 *  - 'a-norm' every row of A has norm `aRowNorm`, B takes the rest. Used when training resumes from
 *             the result (data-parallel rounds): A keeps the magnitude the optimiser was tuned for,
 *             and directions with σ = 0 still get a non-zero A row, so their B column can learn.
 */
export type FactorSplit = 'sqrt' | 'b' | 'a-norm';

export interface FactorOptions {
  split?: FactorSplit;
  aRowNorm?: number;
  /** Module scaling of the output (alpha/r of the config it will be written with). Default 1. */
  scaling?: number;
  /** Seed for the padding rows of A in 'a-norm' mode. */
  padSeed?: number;
}

/** LoRA factors of rank `rank` from the top triples of `svd`; missing triples become zero columns of B. */
export function moduleFromSvd(svd: Svd, rank: number, opts: FactorOptions = {}): LoraModule {
  const { m, n } = svd;
  const split = opts.split ?? 'sqrt';
  const scaling = opts.scaling ?? 1;
  const c = opts.aRowNorm ?? 1;
  if (!(scaling > 0)) throw new Error(`output scaling must be positive, got ${scaling}`);
  const b = new Float32Array(m * rank);
  const a = new Float32Array(rank * n);
  const used = Math.min(rank, svd.k);
  for (let j = 0; j < used; j++) {
    const sig = svd.s[j] / scaling;
    let bc: number;
    let ac: number;
    if (split === 'sqrt') bc = ac = Math.sqrt(sig);
    else if (split === 'b') {
      bc = sig;
      ac = 1;
    } else {
      ac = c;
      bc = sig / c;
    }
    for (let i = 0; i < m; i++) b[i * rank + j] = svd.ut[j * m + i] * bc;
    for (let i = 0; i < n; i++) a[j * n + i] = svd.vt[j * n + i] * ac;
  }
  if (split === 'a-norm' && used < rank) padRows(a, svd.vt, used, rank, n, c, opts.padSeed ?? 1);
  return { a, b, rank, inFeatures: n, outFeatures: m, scaling };
}

/** Fills rows used..rank-1 of A with random unit rows orthogonal to the rows before, times c. */
function padRows(
  a: Float32Array,
  vt: Float64Array | Float32Array,
  used: number,
  rank: number,
  n: number,
  c: number,
  seed: number,
) {
  const rng = new SplitMix32(seed);
  const basis: (Float64Array | Float32Array)[] = [];
  for (let j = 0; j < used; j++) basis.push(vt.subarray(j * n, (j + 1) * n));
  for (let j = used; j < rank; j++) {
    let row = new Float64Array(n);
    for (let attempt = 0; attempt < 4; attempt++) {
      for (let i = 0; i < n; i++) row[i] = rng.normal();
      // Two rounds of Gram–Schmidt: one is not enough in floating point.
      for (let round = 0; round < 2; round++) {
        for (const q of basis) {
          let dot = 0;
          for (let i = 0; i < n; i++) dot += row[i] * q[i];
          for (let i = 0; i < n; i++) row[i] -= dot * q[i];
        }
      }
      let norm = 0;
      for (let i = 0; i < n; i++) norm += row[i] * row[i];
      norm = Math.sqrt(norm);
      if (norm > 1e-8) {
        for (let i = 0; i < n; i++) row[i] /= norm;
        break;
      }
      // rank > n: no orthogonal direction is left; the row stays zero.
      if (attempt === 3) row = new Float64Array(n);
    }
    basis.push(row);
    for (let i = 0; i < n; i++) a[j * n + i] = row[i] * c;
  }
}

/**
 * Exact factors of a dense ΔW (m×n) at rank min(m, n), with no SVD: B = ΔW/scaling and A = I when
 * n ≤ m, else B = I and A = ΔW/scaling. What `--rank full` gives for entry-wise methods.
 */
export function moduleFromDenseExact(delta: ArrayLike<number>, m: number, n: number, scaling = 1): LoraModule {
  if (n <= m) {
    const a = new Float32Array(n * n);
    for (let i = 0; i < n; i++) a[i * n + i] = 1;
    const b = new Float32Array(m * n);
    for (let i = 0; i < b.length; i++) b[i] = delta[i] / scaling;
    return { a, b, rank: n, inFeatures: n, outFeatures: m, scaling };
  }
  const b = new Float32Array(m * m);
  for (let i = 0; i < m; i++) b[i * m + i] = 1;
  const a = new Float32Array(m * n);
  for (let i = 0; i < a.length; i++) a[i] = delta[i] / scaling;
  return { a, b, rank: m, inFeatures: n, outFeatures: m, scaling };
}

/** Σσ² kept / Σσ² total; 1 for a zero matrix (nothing was lost). */
export function energyFraction(kept: number, total: number): number {
  return total > 0 ? Math.min(1, kept / total) : 1;
}
