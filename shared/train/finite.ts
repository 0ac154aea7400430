// A training step whose loss or gradient is NaN or ±Inf must stop the run before the optimiser
// touches the adapter: one non-finite value spreads to every parameter through AdamW, and a
// checkpoint written after it would carry the damage into every resume. The error names the step
// and the module, so the run (or the cluster shard) fails with a reason a user can act on.
import { ChorusError } from '../errors.ts';
import { firstNonFinite } from '../lora/check.ts';
import type { FlatSlot } from './layout.ts';

export function checkLossFinite(lossSum: number, step: number): void {
  if (!Number.isFinite(lossSum)) {
    throw new ChorusError(
      `step ${step}: the training loss is ${lossSum} (not finite); stopped before the update, nothing checkpointed ` +
        '(a lower training.lr or training.max_grad_norm, or the data, may be at fault)',
    );
  }
}

/** Throws naming the first module (and factor) whose gradient holds NaN or ±Inf. */
export function checkGradientFinite(gradSums: Float32Array, slots: readonly FlatSlot[], step: number): void {
  if (firstNonFinite(gradSums) < 0) return;
  for (const s of slots) {
    for (const [factor, from, length] of [
      ['lora_A', s.offset, s.aLength],
      ['lora_B', s.offset + s.aLength, s.bLength],
    ] as const) {
      const i = firstNonFinite(gradSums.subarray(from, from + length));
      if (i >= 0) {
        throw new ChorusError(
          `step ${step}: the gradient of ${s.path}.${factor} holds ${gradSums[from + i]} at element ${i}; ` +
            'stopped before the update, nothing checkpointed',
        );
      }
    }
  }
  throw new ChorusError(`step ${step}: the gradient holds a non-finite value; stopped before the update`);
}
