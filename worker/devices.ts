// Device discovery: GPUs through nvidia-smi when present, else CPU slots; `--devices` overrides
// (auto | cpu:N | gpu:0,1). Each device carries the memory a shard on it may use, reported at registration
// so the coordinator places by it: a GPU's own memory, a CPU slot's share of the machine, or `--memory` for
// each device when the operator sets one (a machine shared with other work).
import { execFileSync } from 'node:child_process';
import { totalmem } from 'node:os';
import { ChorusError } from '../shared/errors.ts';
import type { DeviceMemory } from '../shared/train/memory-limits.ts';

export interface DeviceSpec {
  id: string;
  kind: 'cpu' | 'gpu';
  index: number;
  description: string;
  /** What a shard on this device may use (0: unknown). */
  memoryBytes: number;
  /** memoryBytes came from --memory. */
  memoryFromFlag?: boolean;
}

/** The devices of `--devices`, each with `--memory` (bytes) as its budget when given. */
export function parseDevices(text: string | undefined, memoryBytes?: number): DeviceSpec[] {
  const devices = detect(text);
  if (memoryBytes === undefined) return devices;
  return devices.map((d) => ({ ...d, memoryBytes, memoryFromFlag: true }));
}

/** How the memory plan sees a device: a GPU bounds the engine, a CPU slot the process. */
export function deviceMemory(d: DeviceSpec): DeviceMemory {
  const bytes = d.memoryBytes > 0 ? d.memoryBytes : undefined;
  if (d.kind === 'gpu')
    return { device: d.id, gpu: true, deviceBytes: bytes, budgetBytes: d.memoryFromFlag ? bytes : undefined };
  const budgetWhat = d.memoryFromFlag ? undefined : `${d.id}'s share of this machine's memory`;
  return { device: d.id, budgetBytes: bytes, budgetWhat };
}

function detect(text: string | undefined): DeviceSpec[] {
  const spec = (text ?? 'auto').trim();
  if (spec === 'auto') {
    const gpus = detectGpus();
    return gpus.length > 0 ? gpus : cpuSlots(1);
  }
  let m = /^cpu(?::(\d+))?$/.exec(spec);
  if (m) {
    const n = m[1] === undefined ? 1 : Number(m[1]);
    if (n < 1 || n > 256) throw new ChorusError(`--devices: cpu:${m[1]} must have 1..256 slots`);
    return cpuSlots(n);
  }
  m = /^gpu:(\d+(?:,\d+)*)$/.exec(spec);
  if (m) {
    const known = new Map(detectGpus().map((g) => [g.index, g]));
    return m[1]
      .split(',')
      .map(Number)
      .map((i) => known.get(i) ?? { id: `gpu:${i}`, kind: 'gpu', index: i, description: `GPU ${i}`, memoryBytes: 0 });
  }
  throw new ChorusError(`--devices: "${spec}" is not auto, cpu:N or gpu:I,J,…`);
}

function cpuSlots(n: number): DeviceSpec[] {
  // Slots share the machine: each may use an equal part of its memory.
  const share = Math.floor(totalmem() / n);
  return Array.from({ length: n }, (_, i) => ({
    id: `cpu:${i}`,
    kind: 'cpu',
    index: i,
    description: 'CPU slot (wasm backend)',
    memoryBytes: share,
  }));
}

function detectGpus(): DeviceSpec[] {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=index,name,memory.total', '--format=csv,noheader,nounits'], {
      encoding: 'utf8',
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [index, name, mem] = line.split(',').map((s) => s.trim());
        return {
          id: `gpu:${index}`,
          kind: 'gpu' as const,
          index: Number(index),
          description: name,
          memoryBytes: Number(mem) * 1024 * 1024,
        };
      });
  } catch {
    return [];
  }
}
