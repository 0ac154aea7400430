// A trainer checkpoint as one object-store blob: the three flat arrays as safetensors tensors,
// everything else (step, data cursor, activation counts, seed) as JSON metadata.
import { parseSafetensors, serializeSafetensors, tensorToFloat32 } from '../shared/formats/safetensors.ts';
import { ChorusError } from '../shared/errors.ts';
import type { TrainerState } from '../shared/train/trainer.ts';

export function encodeCheckpoint(s: TrainerState): Uint8Array {
  const t = (a: Float32Array) => ({
    dtype: 'F32' as const,
    shape: [a.length],
    data: new Uint8Array(a.buffer, a.byteOffset, a.byteLength),
  });
  const meta = { step: s.step, moduleSteps: s.moduleSteps, cursor: s.cursor, activation: s.activation, seed: s.seed };
  return serializeSafetensors(
    new Map([
      ['params', t(s.params)],
      ['exp_avg', t(s.expAvg)],
      ['exp_avg_sq', t(s.expAvgSq)],
    ]),
    { chorus_state: JSON.stringify(meta) },
  );
}

export function decodeCheckpoint(bytes: Uint8Array, source: string): TrainerState {
  const { tensors, metadata } = parseSafetensors(bytes, source);
  const get = (n: string) => {
    const v = tensors.get(n);
    if (!v) throw new ChorusError(`${source}: checkpoint lacks tensor ${n}`);
    return tensorToFloat32(v);
  };
  if (!metadata.chorus_state) throw new ChorusError(`${source}: not a Chorus checkpoint`);
  const meta = JSON.parse(metadata.chorus_state) as Omit<TrainerState, 'params' | 'expAvg' | 'expAvgSq'>;
  return { ...meta, params: get('params'), expAvg: get('exp_avg'), expAvgSq: get('exp_avg_sq') };
}
