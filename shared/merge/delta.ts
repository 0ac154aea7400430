// Merging one module in ΔW space (the default, --space delta). ΔW_k = s_k · B_k A_k.
//   cat                       exact: B = [B_1 … B_K], A = [w_1 s_1 A_1; …; w_K s_K A_K] (as PEFT's cat);
//                             an explicit smaller rank truncates by SVD.
//   linear, task_arithmetic   Σ w_k ΔW_k (identical here), re-factorised by SVD of the low-rank
//   svd                       product (never a dense SVD): exact at the default rank Σ r_k for
//                             linear, truncated to max r_k for svd.
//   orthogonal_dropout        disjoint masks over output units (orthogonal.ts), ×N, then as cat.
//   ties, dare_*, magnitude_  entry-wise on the dense ΔW_k (one of them in memory at a time), then
//   prune                     truncated SVD to max r_k, or the exact rank-min(m,n) form with --rank full.
// Output modules have scaling 1 (lora_alpha = r) with √σ on each factor. The heavy work goes through
// kernels.ts in the precision the options ask for (float32 on the tensor engine by default).
import type { LoraModule } from '../lora/types.ts';
import { combineEntrywise, type EntrywiseKind } from './combine.ts';
import { energyFraction, moduleFromDenseExact, moduleFromSvd } from './factorize.ts';
import { frobenius2 } from './dense.ts';
import { denseTruncatedSvd, energyKept, entrywiseBuffer, lowRankSvd, visitDeltas } from './kernels.ts';
import { nameHash, type ModuleReport, type ResolvedOptions } from './options.ts';
import { deriveSeed } from '../tensor/random.ts';
import { orthogonalMasked } from './orthogonal.ts';

export interface ModuleOutcome {
  module: LoraModule;
  report: ModuleReport;
}

export function mergeModuleDelta(name: string, mods: LoraModule[], opt: ResolvedOptions): ModuleOutcome {
  const m = mods[0].outFeatures;
  const n = mods[0].inFeatures;
  const sumRank = mods.reduce((s, x) => s + x.rank, 0);
  const maxRank = Math.max(...mods.map((x) => x.rank));
  const exactCap = Math.min(m, n);
  const coef = mods.map((x, k) => opt.weights[k] * x.scaling);
  const method = opt.method;

  if (method === 'orthogonal_dropout') {
    // Disjoint output-unit masks, rescaled by N (orthogonal.ts), then the exact stack (or its SVD).
    const masked = orthogonalMasked(mods, coef, opt.seed, nameHash(name));
    const wanted = opt.rank === 'full' ? undefined : opt.rank;
    if (wanted === undefined || wanted >= sumRank) {
      return { module: catModule(masked.mods, masked.coef), report: { name, rank: sumRank, energyKept: 1 } };
    }
    const rank = Math.min(wanted, exactCap);
    const { svd, sigma } = lowRankSvd(masked.mods, masked.coef, rank, opt.precision);
    return { module: moduleFromSvd(svd, rank), report: { name, rank, energyKept: energyKept(sigma, rank) } };
  }

  if (method === 'cat' || method === 'linear' || method === 'task_arithmetic' || method === 'svd') {
    const wanted = opt.rank === 'full' ? undefined : (opt.rank ?? (method === 'svd' ? maxRank : undefined));
    if (method === 'cat' && (wanted === undefined || wanted >= sumRank)) {
      return { module: catModule(mods, coef), report: { name, rank: sumRank, energyKept: 1 } };
    }
    // Exact output: every non-trivial triple of the core (at most min(Σr, m, n)).
    const rank = Math.min(wanted ?? Math.min(sumRank, exactCap), exactCap);
    const { svd, sigma } = lowRankSvd(mods, coef, rank, opt.precision);
    return {
      module: moduleFromSvd(svd, rank),
      report: { name, rank, energyKept: energyKept(sigma, rank) },
    };
  }

  const kind = method as EntrywiseKind;
  const hash = nameHash(name);
  const merged = combineEntrywise(
    mods.length,
    entrywiseBuffer(m * n, opt.precision),
    visitDeltas(mods, opt.precision),
    {
      kind,
      weights: opt.weights,
      density: opt.density,
      majoritySign: opt.majoritySign,
      seeds: mods.map((_, k) => deriveSeed(opt.seed, hash, k, 0)),
    },
  );
  const rank = opt.rank === 'full' ? exactCap : Math.min(opt.rank ?? maxRank, exactCap);
  if (rank >= exactCap) {
    return { module: moduleFromDenseExact(merged, m, n), report: { name, rank: exactCap, energyKept: 1 } };
  }
  const total = frobenius2(merged);
  const svd = denseTruncatedSvd(merged, m, n, rank, { seed: deriveSeed(opt.seed, hash, 1), ...opt.svd });
  let kept = 0;
  for (let j = 0; j < svd.k; j++) kept += svd.s[j] * svd.s[j];
  return { module: moduleFromSvd(svd, rank), report: { name, rank, energyKept: energyFraction(kept, total) } };
}

/** Exact stacking, PEFT's layout: the coefficient w_k s_k goes on A; the result has scaling 1. */
export function catModule(mods: LoraModule[], coef: number[]): LoraModule {
  const m = mods[0].outFeatures;
  const n = mods[0].inFeatures;
  const R = mods.reduce((s, x) => s + x.rank, 0);
  const a = new Float32Array(R * n);
  const b = new Float32Array(m * R);
  let off = 0;
  mods.forEach((mod, k) => {
    const r = mod.rank;
    for (let j = 0; j < r; j++) {
      for (let i = 0; i < n; i++) a[(off + j) * n + i] = coef[k] * mod.a[j * n + i];
      for (let i = 0; i < m; i++) b[i * R + off + j] = mod.b[i * r + j];
    }
    off += r;
  });
  return { a, b, rank: R, inFeatures: n, outFeatures: m, scaling: 1 };
}
