// Device discovery: GPUs through nvidia-smi when present, else CPU slots; `--devices` overrides
// (auto | cpu:N | gpu:0,1).
import { execFileSync } from 'node:child_process';
import { ChorusError } from '../shared/errors.ts';

export interface DeviceSpec {
  id: string;
  kind: 'cpu' | 'gpu';
  index: number;
  description: string;
  memoryBytes: number;
}

export function parseDevices(text: string | undefined): DeviceSpec[] {
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
  return Array.from({ length: n }, (_, i) => ({
    id: `cpu:${i}`,
    kind: 'cpu',
    index: i,
    description: 'CPU slot (wasm backend)',
    memoryBytes: 0,
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
