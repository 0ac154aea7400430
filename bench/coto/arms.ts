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
];

export function findArms(names: string[] | undefined): Arm[] {
  if (!names) return ARMS;
  return names.map((n) => {
    const arm = ARMS.find((a) => a.name === n);
    if (!arm) throw new Error(`unknown arm "${n}" (known: ${ARMS.map((a) => a.name).join(', ')})`);
    return arm;
  });
}
