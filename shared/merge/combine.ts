// Entry-wise combination of K same-shaped tensors, PEFT's merge_utils semantics:
//   linear            Σ w_k x_k
//   magnitude_prune   Σ w_k trim(x_k)
//   dare_linear       Σ w_k dare(x_k)
//   ties / dare_ties  elect a sign per entry from the sparsified, UNweighted tensors ("total": sign
//                     of their sum, "frequency": sign of the sum of their signs; a tie counts as +),
//                     then Σ w_k x_k over the entries whose sign equals the elected one, divided by
//                     how many agree (at least 1). Zero entries never agree.
// The tensors are produced on demand (`produce(k, out)`) so that only one of them is in memory at a
// time: a 4096×4096 ΔW is 128 MiB in float64, and K of them would not fit comfortably. Sign election
// needs a second pass, which produces each tensor again (DARE masks are seeded, so they repeat).
import { applyCut, magnitudePruneInPlace, randomPruneInPlace, type MajoritySign, type PruneCut } from './sparsify.ts';

export type EntrywiseKind = 'linear' | 'ties' | 'dare_linear' | 'dare_ties' | 'magnitude_prune';

export interface EntrywiseSpec {
  kind: EntrywiseKind;
  weights: number[];
  density: number;
  majoritySign: MajoritySign;
  /** One DARE seed per tensor. */
  seeds: number[];
}

export function combineEntrywise(
  count: number,
  size: number,
  produce: (k: number, out: Float64Array) => void,
  spec: EntrywiseSpec,
): Float64Array {
  const { kind, weights, density } = spec;
  const magnitude = kind === 'ties' || kind === 'magnitude_prune';
  const random = kind === 'dare_linear' || kind === 'dare_ties';
  const x = new Float64Array(size);
  const scratch = magnitude && density < 1 ? new Float64Array(size) : undefined;
  // The second pass replays each tensor's magnitude cut instead of selecting again.
  const cuts = new Map<number, PruneCut | undefined>();
  const sparsified = (k: number) => {
    produce(k, x);
    if (magnitude) {
      if (cuts.has(k)) applyCut(x, cuts.get(k));
      else cuts.set(k, magnitudePruneInPlace(x, density, scratch));
    } else if (random) randomPruneInPlace(x, density, spec.seeds[k]);
    return x;
  };

  const out = new Float64Array(size);
  if (kind !== 'ties' && kind !== 'dare_ties') {
    for (let k = 0; k < count; k++) {
      const w = weights[k];
      if (w === 0) continue;
      const t = sparsified(k);
      for (let i = 0; i < size; i++) out[i] += w * t[i];
    }
    return out;
  }

  // Pass 1: elect. `out` holds the election sum until it becomes the numerator.
  const frequency = spec.majoritySign === 'frequency';
  for (let k = 0; k < count; k++) {
    const t = sparsified(k);
    if (frequency) for (let i = 0; i < size; i++) out[i] += Math.sign(t[i]);
    else for (let i = 0; i < size; i++) out[i] += t[i];
  }
  const positive = new Uint8Array(size);
  for (let i = 0; i < size; i++) positive[i] = out[i] >= 0 ? 1 : 0;
  out.fill(0);
  // Pass 2: disjoint mean of the weighted entries that agree with the elected sign.
  const agree = count < 65536 ? new Uint16Array(size) : new Uint32Array(size);
  for (let k = 0; k < count; k++) {
    const w = weights[k];
    const t = sparsified(k);
    for (let i = 0; i < size; i++) {
      const v = t[i];
      if (v === 0 || v > 0 !== (positive[i] === 1)) continue;
      out[i] += w * v;
      agree[i]++;
    }
  }
  for (let i = 0; i < size; i++) if (agree[i] > 1) out[i] /= agree[i];
  return out;
}
