// Entries of the flat adapter that an optimiser step must leave alone: the entries lora.sparsity
// pruned (fixed for the run) and, with lora.split, the rank groups not drawn for the step. Their
// gradient is zeroed before clipping, and their value and Adam moments are put back after the update,
// so neither weight decay nor momentum moves them.
import { ChorusError } from '../errors.ts';
import { activeGroupsAt } from '../lora/split.ts';
import type { LoraSplit } from '../lora/types.ts';
import type { FlatLayout } from './layout.ts';

export class FrozenEntries {
  private constructor(
    private readonly layout: FlatLayout,
    /** 1 = pruned (lora.sparsity), or null. */
    readonly pruned: Uint8Array | null,
    private readonly split: { split: LoraSplit; seed: number } | null,
    /** Rank of each module (layout.slots order). */
    private readonly ranks: number[],
  ) {}

  /** null when nothing is ever frozen (neither sparsity nor split). */
  static of(
    layout: FlatLayout,
    ranks: number[],
    pruned: Uint8Array | null,
    split: { split: LoraSplit; seed: number } | null,
  ): FrozenEntries | null {
    if (!pruned && !split) return null;
    if (split) {
      const G = split.split.groups;
      layout.slots.forEach((s, i) => {
        if (ranks[i] % G !== 0) {
          throw new ChorusError(`lora.split: ${s.path} has rank ${ranks[i]}, not a multiple of ${G} groups`);
        }
      });
    }
    return new FrozenEntries(layout, pruned, split, ranks);
  }

  /** lora.split: the rank groups that train at `step` (null without split). */
  groupsAt(step: number): boolean[] | null {
    return this.split ? activeGroupsAt(this.split.split, this.split.seed, step) : null;
  }

  /** 1 for every entry that step `step` must not change. */
  maskAt(step: number): Uint8Array {
    const mask = this.pruned ? this.pruned.slice() : new Uint8Array(this.layout.size);
    const on = this.groupsAt(step);
    if (!on) return mask;
    const G = on.length;
    this.layout.slots.forEach((s, i) => {
      const r = this.ranks[i];
      const inF = s.aLength / r;
      const outF = s.bLength / r;
      const size = r / G;
      for (let j = 0; j < r; j++) {
        if (on[Math.floor(j / size)]) continue;
        mask.fill(1, s.offset + j * inF, s.offset + (j + 1) * inF); // row j of A
        const b = s.offset + s.aLength;
        for (let o = 0; o < outF; o++) mask[b + o * r + j] = 1; // column j of B
      }
    });
    return mask;
  }
}

/** Zeroes the masked entries of a gradient (a copy; the caller's array is left as it was). */
export function maskGradient(grads: Float32Array, mask: Uint8Array): Float32Array {
  const out = grads.slice();
  for (let i = 0; i < mask.length; i++) if (mask[i]) out[i] = 0;
  return out;
}

/** Runs `update` and puts the masked entries of `arrays` back as they were before it. */
export function holdMasked(mask: Uint8Array | null, arrays: Float32Array[], update: () => void): void {
  if (!mask) return update();
  const idx: number[] = [];
  for (let i = 0; i < mask.length; i++) if (mask[i]) idx.push(i);
  const saved = arrays.map((a) => Float32Array.from(idx, (i) => a[i]));
  update();
  arrays.forEach((a, k) => idx.forEach((i, j) => (a[i] = saved[k][j])));
}
