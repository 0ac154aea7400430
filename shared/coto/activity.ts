// What CoTo did to each layer over a run: in how many optimiser steps its adapters were on, and the
// mean training loss of the steps with the layer on and with it off (the runners' figures that the
// coordinator folds into the per-layer report next to the Shapley estimates). One type for the
// trainer's checkpointed counts and the coordinator's per-task aggregate over replicas.
import { ChorusError } from '../errors.ts';

export interface LayerActivityJson {
  numLayers: number;
  steps: number;
  counts: number[];
  /** Loss sums and step counts with the layer on / off; absent in checkpoints written before they existed. */
  lossActiveSum?: number[];
  lossActiveN?: number[];
  lossInactiveSum?: number[];
  lossInactiveN?: number[];
}

export class LayerActivity {
  readonly counts: number[];
  readonly lossActiveSum: number[];
  readonly lossActiveN: number[];
  readonly lossInactiveSum: number[];
  readonly lossInactiveN: number[];
  steps = 0;

  constructor(readonly numLayers: number) {
    const zeros = () => new Array<number>(numLayers).fill(0);
    this.counts = zeros();
    this.lossActiveSum = zeros();
    this.lossActiveN = zeros();
    this.lossInactiveSum = zeros();
    this.lossInactiveN = zeros();
  }

  /** One optimiser step: which layers were on, and its loss (a non-finite loss counts the step only). */
  record(mask: readonly boolean[], loss = Number.NaN): void {
    if (mask.length !== this.numLayers)
      throw new ChorusError(`coto: mask has ${mask.length} layers, expected ${this.numLayers}`);
    const scored = Number.isFinite(loss);
    mask.forEach((on, l) => {
      if (on) this.counts[l]++;
      if (!scored) return;
      if (on) {
        this.lossActiveSum[l] += loss;
        this.lossActiveN[l]++;
      } else {
        this.lossInactiveSum[l] += loss;
        this.lossInactiveN[l]++;
      }
    });
    this.steps++;
  }

  /** Fraction of recorded steps each layer was on. */
  rates(): number[] {
    return this.counts.map((c) => (this.steps ? c / this.steps : 0));
  }

  meanLossActive(): (number | null)[] {
    return this.lossActiveSum.map((s, l) => (this.lossActiveN[l] ? s / this.lossActiveN[l] : null));
  }

  meanLossInactive(): (number | null)[] {
    return this.lossInactiveSum.map((s, l) => (this.lossInactiveN[l] ? s / this.lossInactiveN[l] : null));
  }

  /** Adds another run's figures (e.g. replicas of one task). */
  add(other: LayerActivity): void {
    if (other.numLayers !== this.numLayers)
      throw new ChorusError(`coto: cannot add counts of ${other.numLayers} layers to ${this.numLayers}`);
    for (const key of ['counts', 'lossActiveSum', 'lossActiveN', 'lossInactiveSum', 'lossInactiveN'] as const) {
      other[key].forEach((v, l) => (this[key][l] += v));
    }
    this.steps += other.steps;
  }

  toJSON(): LayerActivityJson {
    return {
      numLayers: this.numLayers,
      steps: this.steps,
      counts: [...this.counts],
      lossActiveSum: [...this.lossActiveSum],
      lossActiveN: [...this.lossActiveN],
      lossInactiveSum: [...this.lossInactiveSum],
      lossInactiveN: [...this.lossInactiveN],
    };
  }

  static fromJSON(json: unknown, source = 'activation counts'): LayerActivity {
    const o = json as Partial<LayerActivityJson> | null;
    const isCount = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0;
    if (!o || typeof o !== 'object') throw new ChorusError(`${source}: expected an object`);
    if (!isCount(o.numLayers) || o.numLayers === 0)
      throw new ChorusError(`${source}: numLayers must be a positive integer`);
    if (!isCount(o.steps)) throw new ChorusError(`${source}: steps must be a non-negative integer`);
    const n = o.numLayers!;
    const list = (v: unknown, what: string, ok: (x: unknown) => boolean) => {
      if (!Array.isArray(v) || v.length !== n || !v.every(ok))
        throw new ChorusError(
          `${source}: ${what} must be ${n} ${ok === isCount ? 'non-negative integers' : 'numbers'}`,
        );
      return v as number[];
    };
    const counts = list(o.counts, 'counts', isCount);
    if (counts.some((c) => c > o.steps!)) throw new ChorusError(`${source}: a layer count exceeds steps (${o.steps})`);
    const a = new LayerActivity(n);
    a.steps = o.steps!;
    counts.forEach((v, l) => (a.counts[l] = v));
    const isNumber = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
    for (const [key, ok] of [
      ['lossActiveSum', isNumber],
      ['lossActiveN', isCount],
      ['lossInactiveSum', isNumber],
      ['lossInactiveN', isCount],
    ] as const) {
      if (o[key] !== undefined) list(o[key], key, ok).forEach((v, l) => (a[key][l] = v));
    }
    return a;
  }
}
