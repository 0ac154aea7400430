// Arms of the CoTo benchmark: each is a change to the task as the plain-LoRA baseline trains it, so a
// new training method (issue 12's rdrop, dropout_samples, …) becomes an arm by adding an entry here —
// every probe then runs for it too. The steps, learning rate, data and seeds are the baseline's in
// every arm.
import { COTO_DEFAULTS } from '../../shared/coto/schedule.ts';
import type { ResolvedTask } from '../../shared/job/types.ts';

export interface Arm {
  name: string;
  description: string;
  /** The task this arm trains, from the shared baseline (CoTo off). */
  configure(base: ResolvedTask): ResolvedTask;
}

export const ARMS: Arm[] = [
  {
    name: 'coto',
    description: 'CoTo with the paper’s scheduler: p 0.1 → 1 over the first 75 % of steps, per layer, no rescaling',
    configure: (t) => ({ ...t, coto: { ...COTO_DEFAULTS } }),
  },
  {
    name: 'lora',
    description: 'plain LoRA (every layer’s adapter trains at every step)',
    configure: (t) => ({ ...t, coto: null }),
  },
  // Issue 12's training methods (docs/METHODS.md), each on plain LoRA (CoTo off).
  {
    name: 'msd',
    description: 'multi-sample dropout: LoRA dropout 0.1, 2 dropout samples per step, losses averaged',
    configure: (t) => ({ ...t, coto: null, lora: { ...t.lora, loraDropout: 0.1, dropoutSamples: 2 } }),
  },
  {
    name: 'rdrop',
    description: 'R-Drop: LoRA dropout 0.1, two passes, mean CE + 1 × symmetric KL',
    configure: (t) => ({
      ...t,
      coto: null,
      lora: { ...t.lora, loraDropout: 0.1 },
      training: { ...t.training, rdrop: { alpha: 1 } },
    }),
  },
  {
    name: 'sparse',
    description: 'SparseAdapter: each factor pruned to 50 % at init by SNIP, mask fixed (half the non-zeros)',
    configure: (t) => ({ ...t, coto: null, lora: { ...t.lora, sparsity: { ratio: 0.5, criterion: 'snip' } } }),
  },
  {
    name: 'large_sparse',
    description: 'Large-Sparse: twice the rank (same alpha/r), 50 % pruned by SNIP: the baseline’s non-zero count',
    configure: (t) => ({
      ...t,
      coto: null,
      lora: {
        ...t.lora,
        r: 2 * t.lora.r,
        loraAlpha: 2 * t.lora.loraAlpha,
        sparsity: { ratio: 0.5, criterion: 'snip' },
      },
    }),
  },
  {
    name: 'split',
    description: 'split & merge: the rank in 4 groups, 2 random groups train per step, saved merged',
    configure: (t) => ({ ...t, coto: null, lora: { ...t.lora, split: { groups: 4, active: 2 } } }),
  },
];

export function findArms(names: string[] | undefined): Arm[] {
  if (!names) return ARMS;
  return names.map((n) => {
    const arm = ARMS.find((a) => a.name === n);
    if (!arm) throw new Error(`unknown arm "${n}" (known: ${ARMS.map((a) => a.name).join(', ')})`);
    return arm;
  });
}
