// Gradient synchronisation (sync: gradients). Each replica sends the gradient SUMS of its batch
// for one optimiser step; the coordinator adds them in replica order (float64, then rounded once
// to float32), so every replica receives identical bits and applies the same update: R replicas
// behave as one process with the global batch. Sums are kept since the replicas' last checkpoint
// so a replica that moves to another worker can replay the steps it lost without waiting.

export interface GradPart {
  replica: number;
  sums: Uint8Array;
  tokens: number;
  lossSum: number;
}

export interface GradTotal {
  step: number;
  sums: Uint8Array;
  tokens: number;
  lossSum: number;
}

export class GradientAggregator {
  private readonly parts = new Map<number, (GradPart | undefined)[]>();
  private readonly totals = new Map<number, GradTotal>();
  /** Range of steps this process computed itself (-1: none yet, e.g. just after a restart). */
  private lowest = -1;
  private highest = -1;

  constructor(readonly replicas: number) {}

  total(step: number): GradTotal | undefined {
    return this.totals.get(step);
  }

  /**
   * Whether a total for `step` may exist only in the durable store: nothing computed here yet
   * (a restarted coordinator), or a step older than anything computed here (a replica replaying
   * from a checkpoint taken before the restart). Normal steps never need the lookup.
   */
  mayBeDurable(step: number): boolean {
    return !this.totals.has(step) && (this.highest < 0 || step < this.lowest);
  }

  remember(total: GradTotal): void {
    this.totals.set(total.step, total);
  }

  /** Adds a part; returns the total when this part completed the step (or it was already known). */
  add(step: number, part: GradPart): { total: GradTotal; fresh: boolean } | null {
    const done = this.totals.get(step);
    if (done) return { total: done, fresh: false };
    let list = this.parts.get(step);
    if (!list) {
      list = new Array(this.replicas).fill(undefined);
      this.parts.set(step, list);
    }
    list[part.replica] = part;
    if (list.some((p) => p === undefined)) return null;
    const total = sumParts(step, list as GradPart[]);
    this.parts.delete(step);
    this.totals.set(step, total);
    if (this.lowest < 0 || step < this.lowest) this.lowest = step;
    if (step > this.highest) this.highest = step;
    return { total, fresh: true };
  }

  /** Drops totals every replica has checkpointed past. */
  forgetThrough(step: number): void {
    for (const s of this.totals.keys()) if (s <= step) this.totals.delete(s);
  }
}

function sumParts(step: number, parts: GradPart[]): GradTotal {
  const n = parts[0].sums.byteLength / 4;
  const acc = new Float64Array(n);
  let tokens = 0;
  let lossSum = 0;
  for (const p of parts) {
    if (p.sums.byteLength !== n * 4)
      throw new Error(`replica ${p.replica} sent ${p.sums.byteLength / 4} gradient values, expected ${n}`);
    const f = floats(p.sums);
    for (let i = 0; i < n; i++) acc[i] += f[i];
    tokens += p.tokens;
    lossSum += p.lossSum;
  }
  const out = Float32Array.from(acc);
  return { step, sums: new Uint8Array(out.buffer), tokens, lossSum };
}

function floats(b: Uint8Array): Float32Array {
  if (b.byteOffset % 4 === 0) return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  return new Float32Array(b.slice().buffer);
}

/** A total as an object-store blob: float64 tokens, float64 loss sum, then the float32 sums. */
export function encodeTotal(t: GradTotal): Uint8Array {
  const out = new Uint8Array(16 + t.sums.byteLength);
  const view = new DataView(out.buffer);
  view.setFloat64(0, t.tokens, true);
  view.setFloat64(8, t.lossSum, true);
  out.set(t.sums, 16);
  return out;
}

export function decodeTotal(step: number, b: Uint8Array): GradTotal {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { step, tokens: view.getFloat64(0, true), lossSum: view.getFloat64(8, true), sums: b.slice(16) };
}
