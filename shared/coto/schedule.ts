// CoTo progressive activation (docs/COTO.md): at optimiser step t every layer's adapters are on with
// probability p(t) = p0 + (p1 − p0)·t/ceil(ramp·total), capped at p1; one draw per layer, at least one
// layer on, no rescaling. Pure functions: masks depend only on (seed, step, layer, attempt), so every
// replica and every restarted process computes the same mask for the same optimiser step.
import { ChorusError } from '../errors.ts';

export interface CotoSchedule {
  /** p at step 0. */
  pStart: number;
  /** p once the ramp is over (1 in the paper: the end of training sees every adapter). */
  pEnd: number;
  /** Fraction of the steps over which p ramps from pStart to pEnd. */
  rampFraction: number;
  /**
   * Permutations sampled for the per-layer Shapley estimates at the end of a cluster job (exact for
   * ≤ 6 layers whatever the number); 0: no estimate. Each sample costs up to `layers` evaluation passes.
   */
  shapleySamples: number;
}

/** The published scheduler's defaults, and 8 Shapley permutations. */
export const COTO_DEFAULTS: CotoSchedule = { pStart: 0.1, pEnd: 1, rampFraction: 0.75, shapleySamples: 8 };

/** p(step); `opts` overrides COTO_DEFAULTS field by field. */
export function cotoProbability(step: number, totalSteps: number, opts: Partial<CotoSchedule> = {}): number {
  const p0 = opts.pStart ?? COTO_DEFAULTS.pStart;
  const p1 = opts.pEnd ?? COTO_DEFAULTS.pEnd;
  const ramp = opts.rampFraction ?? COTO_DEFAULTS.rampFraction;
  if (!(p0 >= 0 && p0 <= 1) || !(p1 >= 0 && p1 <= 1))
    throw new ChorusError(`coto: probabilities must lie in [0, 1] (got start ${p0}, end ${p1})`);
  if (!(ramp >= 0 && ramp <= 1)) throw new ChorusError(`coto: ramp fraction must lie in [0, 1], got ${ramp}`);
  if (!Number.isInteger(totalSteps) || totalSteps <= 0)
    throw new ChorusError(`coto: total steps must be a positive integer, got ${totalSteps}`);
  if (!Number.isInteger(step) || step < 0)
    throw new ChorusError(`coto: step must be a non-negative integer, got ${step}`);
  const rampSteps = Math.ceil(ramp * totalSteps);
  // Past the ramp p is p1 exactly: p0 + (p1 − p0)·1 rounds to 0.9999999999999999 for the defaults.
  if (step >= rampSteps) return p1;
  const p = p0 + ((p1 - p0) * step) / rampSteps;
  // "Capped at p1" in the direction of travel (a decreasing schedule is capped from below).
  return p1 >= p0 ? Math.min(p, p1) : Math.max(p, p1);
}

const MASK64 = (1n << 64n) - 1n;
const GOLDEN = 0x9e3779b97f4a7c15n;

/** splitmix64's finaliser: a bijective 64-bit mix. */
function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

function toU64(v: number | bigint, what: string): bigint {
  if (typeof v === 'bigint') return BigInt.asUintN(64, v);
  if (!Number.isSafeInteger(v)) throw new ChorusError(`coto: ${what} must be an integer, got ${v}`);
  return BigInt.asUintN(64, BigInt(v));
}

/**
 * u ∈ [0, 1) from the key (seed, step, layer, attempt): each field is absorbed in turn as
 * h ← mix64(h + field·φ + φ), so distinct keys give unrelated outputs. 53 high bits → double.
 */
export function cotoUniform(seed: number | bigint, step: number, layer: number, attempt: number): number {
  let h = mix64(toU64(seed, 'seed') + GOLDEN);
  for (const [v, what] of [
    [step, 'step'],
    [layer, 'layer'],
    [attempt, 'attempt'],
  ] as const) {
    h = mix64((h + toU64(v, what) * GOLDEN + GOLDEN) & MASK64);
  }
  return Number(h >> 11n) / 9007199254740992;
}

/** Hard cap on redraws; with p ≥ 1e-3 and one layer the chance of reaching it is below 1e-43. */
const MAX_ATTEMPTS = 100_000;

export function cotoMask(seed: number | bigint, step: number, numLayers: number, p: number): boolean[] {
  if (!Number.isInteger(numLayers) || numLayers <= 0)
    throw new ChorusError(`coto: numLayers must be a positive integer, got ${numLayers}`);
  if (!(p >= 0 && p <= 1)) throw new ChorusError(`coto: p must lie in [0, 1], got ${p}`);
  if (p >= 1) return new Array<boolean>(numLayers).fill(true);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const mask: boolean[] = [];
    for (let l = 0; l < numLayers; l++) mask.push(cotoUniform(seed, step, l, attempt) <= p);
    if (mask.some(Boolean)) return mask;
  }
  // Only reachable with p ≈ 0: keep the rule "at least one layer on" deterministically.
  const mask = new Array<boolean>(numLayers).fill(false);
  mask[Math.floor(cotoUniform(seed, step, 0, MAX_ATTEMPTS) * numLayers)] = true;
  return mask;
}

/** p at `step` for a task; 1 when CoTo is off (`schedule` null): plain LoRA trains every layer. */
export function probabilityAt(schedule: CotoSchedule | null, step: number, totalSteps: number): number {
  return schedule ? cotoProbability(step, totalSteps, schedule) : 1;
}

/** The layers whose adapters train at optimiser step `step` (every layer when CoTo is off). */
export function activeLayersAt(
  schedule: CotoSchedule | null,
  seed: number | bigint,
  step: number,
  totalSteps: number,
  numLayers: number,
): boolean[] {
  if (!schedule) return new Array<boolean>(numLayers).fill(true);
  return cotoMask(seed, step, numLayers, cotoProbability(step, totalSteps, schedule));
}
