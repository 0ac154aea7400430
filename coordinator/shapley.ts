// Shapley values of layer adapters (the CoTo paper's cooperative-game view). The value of a
// coalition S of layers is −loss of the model with only S's adapters on. With few layers every
// coalition is evaluated (exact); otherwise permutations are sampled and each permutation's
// prefixes are evaluated (the standard Monte-Carlo estimator, unbiased).
import { createHash } from 'node:crypto';
import { SplitMix32 } from '../shared/tensor/random.ts';

export interface ShapleyPlan {
  layers: number;
  exact: boolean;
  coalitions: number[][];
  /** Sampled permutations (empty when exact). */
  permutations: number[][];
}

const EXACT_MAX_LAYERS = 6;

export function shapleyPlan(layers: number, samples: number, seedKey: string): ShapleyPlan {
  if (layers <= EXACT_MAX_LAYERS) {
    const coalitions: number[][] = [];
    for (let mask = 0; mask < 1 << layers; mask++) coalitions.push(maskLayers(mask, layers));
    return { layers, exact: true, coalitions, permutations: [] };
  }
  const rng = seeded(seedKey);
  const permutations: number[][] = [];
  const seen = new Map<string, number>();
  const coalitions: number[][] = [];
  const add = (c: number[]) => {
    const k = [...c].sort((a, b) => a - b).join(',');
    if (!seen.has(k)) {
      seen.set(k, coalitions.length);
      coalitions.push([...c].sort((a, b) => a - b));
    }
  };
  for (let s = 0; s < samples; s++) {
    const perm = Array.from({ length: layers }, (_, i) => i);
    for (let i = layers - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    permutations.push(perm);
    for (let k = 0; k <= layers; k++) add(perm.slice(0, k));
  }
  return { layers, exact: false, coalitions, permutations };
}

/** losses[i] = loss with coalitions[i] on; returns φ_l (positive = the layer's adapter helps). */
export function shapleyValues(plan: ShapleyPlan, losses: number[]): number[] {
  const value = new Map<string, number>();
  plan.coalitions.forEach((c, i) => value.set(c.join(','), -losses[i]));
  const v = (c: number[]) => value.get([...c].sort((a, b) => a - b).join(','))!;
  const n = plan.layers;
  const phi = new Array<number>(n).fill(0);
  if (plan.exact) {
    const fact = (k: number): number => (k <= 1 ? 1 : k * fact(k - 1));
    for (let l = 0; l < n; l++) {
      for (let mask = 0; mask < 1 << n; mask++) {
        if (mask & (1 << l)) continue;
        const s = maskLayers(mask, n);
        const weight = (fact(s.length) * fact(n - s.length - 1)) / fact(n);
        phi[l] += weight * (v([...s, l]) - v(s));
      }
    }
    return phi;
  }
  for (const perm of plan.permutations) {
    for (let k = 0; k < n; k++) phi[perm[k]] += v(perm.slice(0, k + 1)) - v(perm.slice(0, k));
  }
  return phi.map((x) => x / plan.permutations.length);
}

function maskLayers(mask: number, n: number): number[] {
  const out: number[] = [];
  for (let l = 0; l < n; l++) if (mask & (1 << l)) out.push(l);
  return out;
}

/** The project's seeded generator (shared/tensor/random.ts), keyed by a string. */
function seeded(key: string): () => number {
  const rng = new SplitMix32(createHash('sha256').update(key).digest().readUInt32LE(0));
  return () => rng.uniform();
}
