// The three heavy operations of merging, in either precision:
//   'float32' (default): products on the tensor engine (engine-linalg.ts), small cores in float64;
//   'float64': plain float64 loops (linalg.ts), no engine; the reference the float32 path is tested
//              against, and an exact path for small adapters.
// The methods in delta.ts, factors.ts, reconcile.ts and extract.ts call only these.
import type { LoraModule } from '../lora/types.ts';
import { hostView } from '../tensor/host.ts';
import type { Visit } from './combine.ts';
import { denseDeltaEngine, lowRankSvdEngine, truncatedSvdEngine } from './engine-linalg.ts';
import { energyFraction } from './factorize.ts';
import { svdLowRank, truncatedSvd, type Svd, type TruncatedSvdOptions } from './linalg.ts';
import { mat } from './dense.ts';
import type { Precision } from './options.ts';
import { scratchF32, scratchF64 } from './scratch.ts';

/** Stacks the columns of coef_k B_k (→ R×m rows) and the rows of A_k (→ R×n) in float64. */
function stackFactors(mods: LoraModule[], coef: number[]): { uCols: Float64Array; vRows: Float64Array; total: number } {
  const m = mods[0].outFeatures;
  const n = mods[0].inFeatures;
  const total = mods.reduce((s, x) => s + x.rank, 0);
  const uCols = new Float64Array(total * m);
  const vRows = new Float64Array(total * n);
  let off = 0;
  mods.forEach((mod, k) => {
    const r = mod.rank;
    for (let j = 0; j < r; j++) {
      const row = (off + j) * m;
      for (let i = 0; i < m; i++) uCols[row + i] = coef[k] * mod.b[i * r + j];
      const arow = (off + j) * n;
      for (let i = 0; i < n; i++) vRows[arow + i] = mod.a[j * n + i];
    }
    off += r;
  });
  return { uCols, vRows, total };
}

/** out (m×n) = factor · B A in float64, row by row; four rank terms per sweep of a row. */
function denseDelta(mod: LoraModule, factor: number, out: Float64Array): void {
  const { rank: r, inFeatures: n, outFeatures: m, b } = mod;
  const a = Float64Array.from(mod.a);
  out.fill(0);
  for (let i = 0; i < m; i++) {
    const row = i * n;
    let j = 0;
    for (; j + 4 <= r; j += 4) {
      const f0 = factor * b[i * r + j];
      const f1 = factor * b[i * r + j + 1];
      const f2 = factor * b[i * r + j + 2];
      const f3 = factor * b[i * r + j + 3];
      const a0 = j * n;
      const a1 = a0 + n;
      const a2 = a1 + n;
      const a3 = a2 + n;
      for (let c = 0; c < n; c++) out[row + c] += f0 * a[a0 + c] + f1 * a[a1 + c] + f2 * a[a2 + c] + f3 * a[a3 + c];
    }
    for (; j < r; j++) {
      const f = factor * b[i * r + j];
      const arow = j * n;
      for (let c = 0; c < n; c++) out[row + c] += f * a[arow + c];
    }
  }
}

/** A low-rank SVD with every singular value, for the energy report. */
export interface LowRankSvd {
  svd: Svd;
  sigma: Float64Array;
}

/** Σσ² of the first `kept` / Σσ² of all. */
export function energyKept(sigma: ArrayLike<number>, kept: number): number {
  let total = 0;
  let keep = 0;
  for (let j = 0; j < sigma.length; j++) {
    const e = sigma[j] * sigma[j];
    total += e;
    if (j < kept) keep += e;
  }
  return energyFraction(keep, total);
}

/** SVD of Σ_k coef_k B_k A_k without a dense product, vectors for at least the top `want` triples. */
export function lowRankSvd(mods: LoraModule[], coef: number[], want: number, precision: Precision): LowRankSvd {
  if (precision === 'float32') return lowRankSvdEngine(mods, coef, want);
  const m = mods[0].outFeatures;
  const n = mods[0].inFeatures;
  const { uCols, vRows, total } = stackFactors(mods, coef);
  const svd = svdLowRank(uCols, vRows, m, n, total);
  return { svd, sigma: svd.s };
}

/** Visits the dense deltas scaling_k · B_k A_k one at a time (on the engine, or in float64). */
export function visitDeltas(mods: LoraModule[], precision: Precision): Visit {
  if (precision === 'float32') {
    return (k, use) => {
      const t = denseDeltaEngine(mods[k], mods[k].scaling);
      try {
        use(hostView(t));
      } finally {
        t.dispose();
      }
    };
  }
  return (k, use) => {
    const mod = mods[k];
    const out = scratchF64('delta.f64', mod.outFeatures * mod.inFeatures);
    denseDelta(mod, mod.scaling, out);
    use(out);
  };
}

/** The buffer an entry-wise merge of one m×n module accumulates into (reused from module to module). */
export function entrywiseBuffer(size: number, precision: Precision): Float32Array | Float64Array {
  return precision === 'float32' ? scratchF32('entrywise.out', size) : scratchF64('entrywise.out', size);
}

/** Top-`rank` SVD of a dense m×n matrix in the given precision (exact when small, randomized when large). */
export function denseTruncatedSvd(
  values: Float32Array | Float64Array,
  m: number,
  n: number,
  rank: number,
  opts: TruncatedSvdOptions,
): Svd {
  if (values instanceof Float32Array) return truncatedSvdEngine(values, m, n, rank, opts);
  return truncatedSvd(mat(m, n, values), rank, opts);
}
