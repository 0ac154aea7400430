// Sparse adapters (SparseAdapter, He et al. 2022) for LoRA: each factor of each module is pruned at
// initialisation to exactly round(ratio · entries) zeros — the entries of lowest saliency — and the
// mask stays fixed through training (the trainer never updates a pruned entry). Pruning per factor,
// not globally, keeps the ratio exact in every module and never empties one. Saliency (computed by
// the trainer, shared/train/snip.ts): snip |θ·∂L/∂θ|, magnitude |θ|, random. Ties — B starts at zero,
// so magnitude cannot rank it — are broken by a counter-based draw from (seed, module, factor, index),
// the same in every replica.
import { deriveSeed } from '../tensor/random.ts';

/**
 * Pruned entries (1) of one factor: the round(ratio·n) lowest saliencies, ties broken by the draw
 * keyed by `tieSeed`.
 */
export function pruneMask(saliency: ArrayLike<number>, ratio: number, tieSeed: number): Uint8Array {
  const n = saliency.length;
  const k = Math.round(ratio * n);
  const mask = new Uint8Array(n);
  if (k === 0) return mask;
  const order = Array.from({ length: n }, (_, i) => i);
  const tie = new Uint32Array(n);
  for (let i = 0; i < n; i++) tie[i] = deriveSeed(tieSeed, i);
  order.sort((x, y) => saliency[x] - saliency[y] || tie[x] - tie[y] || x - y);
  for (let i = 0; i < k; i++) mask[order[i]] = 1;
  return mask;
}

/** A draw in [0, 1) per entry: the saliency of the random criterion. */
export function randomSaliency(n: number, seed: number): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => deriveSeed(seed, i) / 4294967296);
}
