// Placement by memory: whether a task's memory plan (shared/train/memory-plan.ts) fits a device as its worker
// reported it. The model's shape comes with the job (the client read config.json and the weight headers); a
// job without it, or a device that reported no memory, is placed by count and its runner plans for itself.
import { ChorusError, errorMessage } from '../shared/errors.ts';
import { parseLlamaConfig, type LlamaConfig } from '../shared/model/config.ts';
import { planMemory } from '../shared/train/memory-plan.ts';
import { memoryLimits } from '../shared/train/memory-limits.ts';
import type { JobSpec } from '../shared/job/types.ts';
import type { DeviceRecord, ModelRecord } from './types.ts';

/** Why a task cannot run on a device (the plan's refusal), or null when it fits. */
export type FitCheck = (taskIndex: number, device: DeviceRecord) => string | null;

/** A config.json is a few hundred bytes; anything far larger is not one. */
const MAX_CONFIG_CHARS = 64 * 1024;

function parseModelRecord(model: ModelRecord): LlamaConfig {
  if (model.configJson.length > MAX_CONFIG_CHARS) {
    throw new ChorusError(
      `model.config_json: ${model.configJson.length} characters, over the ${MAX_CONFIG_CHARS} limit`,
    );
  }
  if (!Number.isSafeInteger(model.weightBytes) || model.weightBytes < 0) {
    throw new ChorusError(`model.weight_bytes: must be a non-negative integer, got ${model.weightBytes}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(model.configJson);
  } catch (err) {
    throw new ChorusError(`model.config_json: not valid JSON (${errorMessage(err)})`);
  }
  return parseLlamaConfig(json, 'model.config_json');
}

/**
 * Checks what no device can change (seq_len beyond the model's positions, streamed weights without
 * recomputation) when the job is submitted; throws the plan's error naming the task's field.
 */
export function checkPlannable(spec: JobSpec, model: ModelRecord): void {
  const config = parseModelRecord(model);
  spec.tasks.forEach((t, i) =>
    planMemory({
      config,
      training: t.training,
      lora: t.lora,
      storedBytes: model.weightBytes,
      limits: { engine: null, host: null, engineInHost: true },
      field: `tasks[${i}].training`,
    }),
  );
}

export function fitCheck(spec: JobSpec, model: ModelRecord | undefined): FitCheck | undefined {
  if (!model) return undefined;
  const config = parseModelRecord(model);
  return (taskIndex, d) => {
    if (!(d.memoryBytes > 0)) return null;
    const gpu = d.kind === 'gpu';
    const engine = d.engine || (gpu ? 'tensorflow' : 'wasm');
    const limits = memoryLimits(
      engine,
      gpu
        ? { gpu, deviceBytes: d.memoryBytes, device: d.id }
        : { budgetBytes: d.memoryBytes, device: d.id, budgetWhat: `${d.id}'s reported memory` },
    );
    const t = spec.tasks[taskIndex];
    try {
      planMemory({
        config,
        training: t.training,
        lora: t.lora,
        storedBytes: model.weightBytes,
        limits,
        field: `tasks[${taskIndex}].training`,
      });
      return null;
    } catch (err) {
      return errorMessage(err);
    }
  };
}
