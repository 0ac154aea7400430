// Orthogonal Monte Carlo dropout for merging ("Rethinking inter-LoRA orthogonality in adapter
// merging", 2025): N adapters' outputs are combined under disjoint Bernoulli masks over the output
// units of each module, so at each unit exactly one adapter contributes. The masks partition the
// units — each adapter keeps a 1/N share (dropout rate p = 1 − 1/N) — and the output is rescaled by
// 1/(1 − p) = N, so the expected merged ΔW over the masks is the plain sum Σ w_k ΔW_k, while for one
// draw the adapters' contributions are orthogonal by construction (disjoint supports).
// A fixed draw is a LoRA again: row o of B_k is kept when unit o belongs to adapter k, and the N masked
// adapters are stacked exactly (cat, rank Σ r_k). The draw comes from (merge seed, module name).
import type { LoraModule } from '../lora/types.ts';
import { deriveSeed, SplitMix32 } from '../tensor/random.ts';

/**
 * owner[o] ∈ [0, count): the adapter that keeps output unit o. A uniformly random permutation dealt
 * round-robin, so shares differ by at most one unit and each unit's owner is uniform when count
 * divides the units.
 */
export function orthogonalPartition(units: number, count: number, seed: number): Uint16Array {
  const perm = Uint32Array.from({ length: units }, (_, i) => i);
  const rng = new SplitMix32(seed);
  for (let i = units - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const owner = new Uint16Array(units);
  for (let i = 0; i < units; i++) owner[perm[i]] = i % count;
  return owner;
}

/** The adapters with the rows of B outside their share zeroed, and their coefficients times N. */
export function orthogonalMasked(
  mods: LoraModule[],
  coef: number[],
  seed: number,
  moduleHash: number,
): { mods: LoraModule[]; coef: number[] } {
  const N = mods.length;
  const owner = orthogonalPartition(mods[0].outFeatures, N, deriveSeed(seed, moduleHash, 0x0d));
  const masked = mods.map((m, k) => {
    const b = new Float32Array(m.b.length);
    for (let o = 0; o < m.outFeatures; o++) {
      if (owner[o] === k) b.set(m.b.subarray(o * m.rank, (o + 1) * m.rank), o * m.rank);
    }
    return { ...m, b };
  });
  return { mods: masked, coef: coef.map((c) => c * N) };
}
