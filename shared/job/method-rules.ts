// The cross-field rules of the training methods (docs/METHODS.md): which settings they need and
// which combinations have no meaning. Field shapes are checked by the schema; this says where a
// valid field does not fit the rest of the task.
import type { LoraConfig } from '../lora/types.ts';
import type { TrainingSettings } from '../train/settings.ts';
import type { SyncSpec } from './types.ts';

/** `where(section, key)` names the field as the user wrote it (a task's override or the top level). */
export function methodProblems(
  lora: LoraConfig,
  training: Pick<TrainingSettings, 'rdrop'>,
  sync: SyncSpec,
  where: (section: 'lora' | 'training', fileKey: string) => string,
): string[] {
  const out: string[] = [];
  const samples = lora.dropoutSamples ?? 1;
  if (samples > 1 && lora.loraDropout === 0) {
    out.push(
      `${where('lora', 'dropout_samples')}: ${samples} samples need lora.dropout > 0 (without dropout every sample is the same pass)`,
    );
  }
  if (training.rdrop) {
    if (lora.loraDropout === 0) {
      out.push(
        `${where('training', 'rdrop')}: needs lora.dropout > 0 (the two passes differ only by their dropout masks)`,
      );
    }
    if (samples > 1) {
      out.push(
        `${where('training', 'rdrop')}: cannot be combined with lora.dropout_samples > 1 (R-Drop takes its own two dropout samples)`,
      );
    }
  }
  if (lora.split) {
    const { groups, active } = lora.split;
    if (active >= groups) {
      out.push(
        `${where('lora', 'split')}.active: must be < split.groups (${groups}); with every group active it is plain LoRA`,
      );
    }
    if (lora.r % groups !== 0) {
      out.push(
        `${where('lora', 'split')}.groups: lora.r (${lora.r}) must be a multiple of the number of groups (${groups})`,
      );
    }
  }
  // Weight rounds re-factorise the replicas' mean (an SVD): the result fills pruned entries and mixes
  // rank groups, so these two train only with gradient sync.
  if (sync.mode === 'weights') {
    for (const key of ['sparsity', 'split'] as const) {
      if (lora[key]) {
        out.push(
          `${where('lora', key)}: needs sync mode gradients (weight rounds re-factorise the adapter, which ${key === 'sparsity' ? 'refills pruned entries' : 'mixes the rank groups'})`,
        );
      }
    }
  }
  return out;
}
