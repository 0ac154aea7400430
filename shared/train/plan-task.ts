// The memory plan of one task on this process's engine, from the base model directory's config.json and its
// weight headers (nothing else is read): what `chorus train` and a cluster runner call before loading.
import { readHfConfig } from '../formats/hf-model.ts';
import { storedWeightBytes } from '../formats/hf-stored.ts';
import { parseLlamaConfig } from '../model/config.ts';
import type { ResolvedTask } from '../job/types.ts';
import { planMemory, type MemoryPlan } from './memory-plan.ts';
import { memoryLimits, type DeviceMemory } from './memory-limits.ts';
import { nativeGemmInfo } from '../tensor/native-gemm.ts';

export async function planTask(
  task: Pick<ResolvedTask, 'baseModel' | 'training' | 'lora'>,
  backend: string,
  device: DeviceMemory = {},
  field = 'training',
): Promise<MemoryPlan> {
  const config = parseLlamaConfig(await readHfConfig(task.baseModel), `${task.baseModel}/config.json`);
  return planMemory({
    config,
    training: task.training,
    lora: task.lora,
    storedBytes: await storedWeightBytes(task.baseModel),
    // This process's engine: planned after it started, it knows whether products run on BLAS.
    limits: memoryLimits(backend, { nativeGemm: nativeGemmInfo().active, ...device }),
    field,
  });
}
