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

  constructor(readonly replicas: number) {}

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
    return { total, fresh: true };
  }

  /** Drops totals every replica has checkpointed past. */
  forgetThrough(step: number): void {
    for (const s of this.totals.keys()) if (s <= step) this.totals.delete(s);
  }
}

export function sumParts(step: number, parts: GradPart[]): GradTotal {
  const n = parts[0].sums.byteLength / 4;
  const acc = new Float64Array(n);
  let tokens = 0;
  let lossSum = 0;
  for (const p of parts) {
    if (p.sums.byteLength !== n * 4) throw new Error(`replica ${p.replica} sent ${p.sums.byteLength / 4} gradient values, expected ${n}`);
    const f = floats(p.sums);
    for (let i = 0; i < n; i++) acc[i] += f[i];
    tokens += p.tokens;
    lossSum += p.lossSum;
  }
  const out = Float32Array.from(acc);
  return { step, sums: new Uint8Array(out.buffer), tokens, lossSum };
}

export function floats(b: Uint8Array): Float32Array {
  if (b.byteOffset % 4 === 0) return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  return new Float32Array(b.slice().buffer);
}
