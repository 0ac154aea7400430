// Adapter merging and extraction: one library for `chorus merge`, `chorus extract`, the cluster's
// data-parallel rounds and its final task merge. Heavy products run in float32 on the tensor engine
// (kernels.ts, engine-linalg.ts), small cores in float64; `precision: 'float64'` runs the float64
// reference loops instead (linalg.ts). Modules run side by side in merge threads with `threads` > 1
// (parallel.ts), each thread with its own engine. Figures and accuracy: docs/MERGE.md.
//
//   mergeAdapters(adapters: LoraAdapter[], options: MergeOptions): Promise<MergeResult>
//     options: { method, weights?, density?, majoritySign?, seed?, rank?, space?, labels?, svd?,
//                precision?, threads?, onModule? }
//     method:  'linear' | 'task_arithmetic' | 'cat' | 'svd' | 'ties' | 'dare_linear' | 'dare_ties' | 'magnitude_prune'
//     result:  { adapter, modules: [{ name, rank, energyKept }] }
//     space 'delta' (default) works on ΔW_k = s_k B_k A_k (s = alpha/r, or alpha/√r with rsLoRA):
//       cat                      exact stacking (rank Σ r_k); a smaller --rank truncates by SVD.
//       linear, task_arithmetic  Σ w_k ΔW_k; default rank Σ r_k (exact). Same thing under two names.
//       svd                      Σ w_k ΔW_k truncated to rank (default max r_k).
//         These three never build a dense ΔW: SVD of the low-rank product via QR of both factors.
//       ties, dare_linear, dare_ties, magnitude_prune  entry-wise on the dense ΔW_k of one module at
//         a time (PEFT's merge_utils conventions: trim to floor(density·n) entries by magnitude; DARE
//         keeps each entry with probability density and divides by density; ties elects signs from
//         the trimmed UNweighted deltas, "total" = sign of the sum, "frequency" = sign of the sum of
//         signs, ties count as +, then the weighted agreeing entries are averaged over how many agree).
//         mergekit differs (signs elected on weighted deltas; DARE rescaled to the L1 norm): we follow
//         PEFT. Result re-factorised by truncated SVD (exact Jacobi when min(m,n) ≤ 256, randomized
//         with power iterations above) to rank (default max r_k); rank 'full' keeps ΔW exactly as
//         B = ΔW, A = I (rank min(m, n)).
//     space 'factors' reproduces PEFT's add_weighted_adapter (fixed upstream semantics): see factors.ts.
//     Output convention: every module has scaling 1 — config lora_alpha = r, use_rslora false. SVD
//     outputs fold √σ into both B and A (PEFT's own svd path puts σ on B; we do that only in factors
//     space); cat keeps PEFT's layout (w_k·s_k on the stacked A_k).
//     Ranks that differ per module go to rank_pattern / alpha_pattern keyed by the module path.
//     Inputs must have the same modules and shapes (the error names the module and both shapes);
//     ranks, alphas and rsLoRA may differ.
//
//   reconcileReplicas(replicas: LoraAdapter[], { method?: 'mean'|'cat_svd'|'cat'|'factor_mean', rank?,
//                     weights?, labels?, seed?, precision?, threads? }): Promise<{ adapter, modules }>
//     Data-parallel round: the weighted mean in ΔW space re-factorised to the replicas' rank, keeping
//     their config (r, alpha, rsLoRA) so training resumes with the same scaling. Modules whose A is
//     identical in every replica are averaged exactly (mean B, same A); otherwise A's rows keep the
//     replicas' RMS row norm and σ = 0 directions get fresh orthogonal A rows (B = 0), so no direction
//     is left with both factors zero. See reconcile.ts.
//
//   extractAdapter(base: Map<name,{shape,data}>, tuned: same, { rank | energy, targets?, svd?, seed?,
//                  baseModelNameOrPath?, precision?, threads?, onModule? }): Promise<{ adapter, modules }>
//     PHLoRA: ΔW = W_tuned − W_base per 2-D weight, truncated SVD; reports energy kept per module.
//   extractAdapterFrom(base: TensorSource, tuned: TensorSource, same options): Promise<same>
//     The same, loading one module of each model at a time (what `chorus extract` uses).
//
//   closeMergeThreads(): stops the merge threads (before a process exits).
//   Linear algebra (linalg.ts): svdDense, svdLowRank, randomizedSvd, truncatedSvd, qrColumns, matmul.
export { mergeAdapters, unitScalingConfig } from './merge.ts';
export {
  MERGE_METHODS,
  DENSITY_METHODS,
  type MergeMethod,
  type MergeOptions,
  type MergeResult,
  type ModuleReport,
} from './options.ts';
export { reconcileReplicas, type ReconcileMethod, type ReconcileOptions, type ReconcileResult } from './reconcile.ts';
export {
  extractAdapter,
  extractAdapterFrom,
  extractModule,
  planExtraction,
  selectModules,
  type ExtractOptions,
  type ExtractReport,
  type ExtractResult,
  type NamedTensor,
  type TensorSource,
} from './extract.ts';
export { moduleFromSvd, moduleFromDenseExact, type FactorSplit, type FactorOptions } from './factorize.ts';
export { PRECISIONS, type Precision } from './options.ts';
export { closeMergeThreads } from './parallel.ts';
export type { MajoritySign } from './sparsify.ts';
export * as linalg from './linalg.ts';
export * as dense from './dense.ts';
