// CoTo progressive activation (see ../shared/CoTo.md). Pure functions; no state. Public API:
//   interface CotoScheduleOptions { pStart=0.1, pEnd=1, rampFraction=0.75 }
//   cotoProbability(step, totalSteps, opts?) → p        p0 + (p1−p0)·step/ceil(ramp·total), capped at p1
//   cotoUniform(seed, step, layer, attempt) → u ∈ [0,1)  counter-based (splitmix64 over the key)
//   cotoMask(seed, step, numLayers, p) → boolean[]       layer on iff u ≤ p; redraws all layers with
//                                                        attempt+1 while none is on
//   cotoMaskForStep(seed, step, totalSteps, numLayers, opts?) convenience: both of the above
//   class ActivationCounter                              per-layer active-step counts, JSON round trip
// Masks depend only on (seed, step, layer, attempt), so every replica and every restarted
// process computes the same mask for the same optimiser step.
import { ChorusError } from '../errors.ts';

export interface CotoScheduleOptions {
  pStart?: number;
  pEnd?: number;
  rampFraction?: number;
}

export function cotoProbability(step: number, totalSteps: number, opts: CotoScheduleOptions = {}): number {
  const p0 = opts.pStart ?? 0.1;
  const p1 = opts.pEnd ?? 1;
  const ramp = opts.rampFraction ?? 0.75;
  if (!(p0 >= 0 && p0 <= 1) || !(p1 >= 0 && p1 <= 1))
    throw new ChorusError(`coto: probabilities must lie in [0, 1] (got start ${p0}, end ${p1})`);
  if (!(ramp >= 0 && ramp <= 1)) throw new ChorusError(`coto: ramp fraction must lie in [0, 1], got ${ramp}`);
  if (!Number.isInteger(totalSteps) || totalSteps <= 0)
    throw new ChorusError(`coto: total steps must be a positive integer, got ${totalSteps}`);
  if (!Number.isInteger(step) || step < 0)
    throw new ChorusError(`coto: step must be a non-negative integer, got ${step}`);
  const rampSteps = Math.ceil(ramp * totalSteps);
  if (rampSteps === 0) return p1;
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

export function cotoMaskForStep(
  seed: number | bigint,
  step: number,
  totalSteps: number,
  numLayers: number,
  opts: CotoScheduleOptions = {},
): boolean[] {
  return cotoMask(seed, step, numLayers, cotoProbability(step, totalSteps, opts));
}

export interface ActivationCountsJson {
  numLayers: number;
  steps: number;
  counts: number[];
}

/** How many optimiser steps each layer's adapter was active in. */
export class ActivationCounter {
  readonly counts: number[];
  steps = 0;

  constructor(readonly numLayers: number) {
    this.counts = new Array<number>(numLayers).fill(0);
  }

  record(mask: readonly boolean[]): void {
    if (mask.length !== this.numLayers)
      throw new ChorusError(`coto: mask has ${mask.length} layers, expected ${this.numLayers}`);
    mask.forEach((on, l) => {
      if (on) this.counts[l]++;
    });
    this.steps++;
  }

  /** Fraction of recorded steps each layer was on. */
  rates(): number[] {
    return this.counts.map((c) => (this.steps ? c / this.steps : 0));
  }

  /** Adds another counter's counts (e.g. from replicas or shards). */
  add(other: ActivationCounter): void {
    if (other.numLayers !== this.numLayers)
      throw new ChorusError(`coto: cannot add counts of ${other.numLayers} layers to ${this.numLayers}`);
    other.counts.forEach((c, l) => (this.counts[l] += c));
    this.steps += other.steps;
  }

  toJSON(): ActivationCountsJson {
    return { numLayers: this.numLayers, steps: this.steps, counts: [...this.counts] };
  }

  static fromJSON(json: unknown, source = 'activation counts'): ActivationCounter {
    const o = json as Partial<ActivationCountsJson> | null;
    const isCount = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0;
    if (!o || typeof o !== 'object') throw new ChorusError(`${source}: expected an object`);
    if (!isCount(o.numLayers) || o.numLayers === 0)
      throw new ChorusError(`${source}: numLayers must be a positive integer`);
    if (!isCount(o.steps)) throw new ChorusError(`${source}: steps must be a non-negative integer`);
    if (!Array.isArray(o.counts) || o.counts.length !== o.numLayers || !o.counts.every(isCount)) {
      throw new ChorusError(`${source}: counts must be ${o.numLayers} non-negative integers`);
    }
    if (o.counts.some((c) => c > o.steps!))
      throw new ChorusError(`${source}: a layer count exceeds steps (${o.steps})`);
    const c = new ActivationCounter(o.numLayers!);
    o.counts.forEach((v, l) => (c.counts[l] = v));
    c.steps = o.steps!;
    return c;
  }
}
