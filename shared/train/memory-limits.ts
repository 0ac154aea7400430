// What one training process may hold, per engine: the numbers the memory plan compares its estimate with.
//   wasm        tensors live in the module's linear memory, which wasm32 caps at 4 GiB; that memory is part of
//               the process, and it never shrinks once grown
//   cpu         tensors are JS typed arrays: only the process's memory bounds them
//   tensorflow  with a GPU, the device's memory (from nvidia-smi or --memory); on CPU the process's memory
// The process's own limit is --memory when a worker was given one (a share of a shared machine), else the
// machine's physical memory.
import { totalmem } from 'node:os';
import { WASM_HEAP_LIMIT, type MemoryLimits } from './memory-plan.ts';

export interface DeviceMemory {
  /** A budget set by the operator (worker --memory) or the device's share of the machine, in bytes. */
  budgetBytes?: number;
  /** How to name that budget in messages (default "<device>'s memory budget (--memory)"). */
  budgetWhat?: string;
  /** The device's own memory when known (GPU memory), in bytes. */
  deviceBytes?: number;
  /** Names the device in messages ("device gpu:0"). */
  device?: string;
  gpu?: boolean;
  /**
   * The wasm engine's products run on BLAS (native GEMM): no XNNPACK packed copy of each weight in the heap.
   * Unknown (a coordinator planning for a worker's device) counts the copies: the safe side.
   */
  nativeGemm?: boolean;
}

export function memoryLimits(backend: string, d: DeviceMemory = {}): MemoryLimits {
  const who = d.device ? `${d.device}'s ` : '';
  const host =
    d.budgetBytes && !d.gpu
      ? { bytes: d.budgetBytes, what: d.budgetWhat ?? `${who}memory budget (--memory)` }
      : { bytes: totalmem(), what: "this machine's memory" };
  if (backend === 'wasm') {
    const packsWeights = !d.nativeGemm;
    return { engine: { bytes: WASM_HEAP_LIMIT, what: 'the wasm heap' }, host, engineInHost: true, packsWeights };
  }
  if (backend === 'tensorflow' && d.gpu) {
    const bytes = d.budgetBytes ?? d.deviceBytes;
    const engine = bytes
      ? { bytes, what: d.budgetBytes ? `${who}memory budget (--memory)` : `${who}GPU memory` }
      : null;
    return { engine, host: { bytes: totalmem(), what: "this machine's memory" }, engineInHost: false };
  }
  return { engine: null, host, engineInHost: true };
}
