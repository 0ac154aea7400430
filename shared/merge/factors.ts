// --space factors: PEFT's LoraModel.add_weighted_adapter, with the upstream fixes (scaling applied
// once on the SVD path, no rsLoRA over-scaling: the output has lora_alpha = r, use_rslora false, so
// its scaling is exactly 1). Supported:
//   linear / task_arithmetic, ties, dare_linear, dare_ties, magnitude_prune
//       act on the A's and on the B's separately (merge_utils functions), with weight
//       sign(w)·√(|w|·s) on each A_k and √(|w|·s) on each B_k (PEFT's negative-weight handling:
//       the sign goes on A only). All input ranks must be equal; the output has that rank.
//       This is PEFT's approximation: Σ_k(...)B_k · Σ_k(...)A_k has cross terms, unlike ΔW space.
//   cat  exact stacking (A_k times w_k·s_k, B_k unweighted), rank Σ r_k. No --rank.
//   svd  Σ w_k ΔW_k, truncated SVD, σ folded into B (PEFT: B = U·diag(S), A = Vh); rank default max r_k.
// A single adapter is merged as linear (as PEFT does). DARE masks come from our seeded generator, not
// torch's, so dare_* in factor space match PEFT in distribution, not bit for bit. PEFT's ties_svd,
// dare_*_svd and magnitude_prune_svd are the delta-space methods (--space delta), up to how σ is split.
import { ChorusError } from '../errors.ts';
import type { LoraModule } from '../lora/types.ts';
import { combineEntrywise, type EntrywiseKind } from './combine.ts';
import { catModule, type ModuleOutcome } from './delta.ts';
import { moduleFromSvd } from './factorize.ts';
import { energyKept, lowRankSvd } from './kernels.ts';
import { nameHash, type ResolvedOptions } from './options.ts';
import { deriveSeed } from '../tensor/random.ts';

export function mergeModuleFactors(name: string, mods: LoraModule[], opt: ResolvedOptions): ModuleOutcome {
  const m = mods[0].outFeatures;
  const n = mods[0].inFeatures;
  const method = mods.length === 1 ? 'linear' : opt.method;
  const sumRank = mods.reduce((s, x) => s + x.rank, 0);
  const maxRank = Math.max(...mods.map((x) => x.rank));

  if (method === 'cat') {
    if (opt.rank !== undefined && opt.rank !== 'full' && opt.rank !== sumRank) {
      throw new ChorusError(`rank does not apply to cat in factors space (its rank is the sum of ranks, ${sumRank})`);
    }
    const coef = mods.map((x, k) => opt.weights[k] * x.scaling);
    return { module: catModule(mods, coef), report: { name, rank: sumRank, energyKept: 1 } };
  }
  if (method === 'svd') {
    const coef = mods.map((x, k) => opt.weights[k] * x.scaling);
    const wanted = opt.rank === 'full' ? Math.min(sumRank, m, n) : (opt.rank ?? maxRank);
    const rank = Math.min(wanted, m, n);
    const { svd, sigma } = lowRankSvd(mods, coef, rank, opt.precision);
    return {
      module: moduleFromSvd(svd, rank, { split: 'b' }),
      report: { name, rank, energyKept: energyKept(sigma, rank) },
    };
  }

  const r = mods[0].rank;
  const bad = mods.findIndex((x) => x.rank !== r);
  if (bad >= 0) {
    throw new ChorusError(
      `method ${method} in factors space needs equal ranks: module ${name} has rank ${r} in ${opt.labels[0]} ` +
        `but ${mods[bad].rank} in ${opt.labels[bad]} (use --space delta, or cat/svd)`,
    );
  }
  if (opt.rank !== undefined && opt.rank !== 'full' && opt.rank !== r) {
    throw new ChorusError(`rank does not apply to ${method} in factors space (its rank is the input rank, ${r})`);
  }
  const root = mods.map((x, k) => Math.sqrt(Math.abs(opt.weights[k] * x.scaling)));
  const sign = mods.map((_, k) => (opt.weights[k] < 0 ? -1 : 1));
  const kind = (method === 'task_arithmetic' ? 'linear' : method) as EntrywiseKind;
  const hash = nameHash(name);
  const common = { kind, density: opt.density, majoritySign: opt.majoritySign };
  // The factors are float32 already: the float64 path only accumulates in float64.
  const wide = opt.precision === 'float64';
  const a = combineEntrywise(
    mods.length,
    wide ? new Float64Array(r * n) : new Float32Array(r * n),
    (k, use) => use(mods[k].a),
    {
      ...common,
      weights: root.map((x, k) => x * sign[k]),
      seeds: mods.map((_, k) => deriveSeed(opt.seed, hash, k, 1)),
    },
  );
  const b = combineEntrywise(
    mods.length,
    wide ? new Float64Array(m * r) : new Float32Array(m * r),
    (k, use) => use(mods[k].b),
    {
      ...common,
      weights: root,
      seeds: mods.map((_, k) => deriveSeed(opt.seed, hash, k, 2)),
    },
  );
  return {
    module: { a: Float32Array.from(a), b: Float32Array.from(b), rank: r, inFeatures: n, outFeatures: m, scaling: 1 },
    report: { name, rank: r, energyKept: 1 },
  };
}
