// An adapter as bytes for the object store: safetensors with PEFT's key names (so the bytes are a
// valid `adapter_model.safetensors`) plus the LoraConfig and per-module scalings in the metadata,
// so a round trip restores the exact in-memory adapter. The PEFT adapter_config.json for a result
// directory comes from the formats library (`peftConfigText`).
import { ChorusError } from '../shared/errors.ts';
import { parseSafetensors, serializeSafetensors, tensorToFloat32, type TensorInput } from '../shared/formats/safetensors.ts';
import type { LoraAdapter, LoraConfig, LoraModule } from '../shared/lora/types.ts';
import { peftConfigJson } from '../shared/formats/peft.ts';

const PREFIX = 'base_model.model.';

export function adapterToBytes(adapter: LoraAdapter): Uint8Array {
  const tensors = new Map<string, TensorInput>();
  const scalings: Record<string, number> = {};
  for (const [path, m] of [...adapter.modules].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    tensors.set(`${PREFIX}${path}.lora_A.weight`, { dtype: 'F32', shape: [m.rank, m.inFeatures], data: bytesOf(m.a) });
    tensors.set(`${PREFIX}${path}.lora_B.weight`, { dtype: 'F32', shape: [m.outFeatures, m.rank], data: bytesOf(m.b) });
    scalings[path] = m.scaling;
  }
  return serializeSafetensors(tensors, { format: 'pt', chorus_config: JSON.stringify(adapter.config), chorus_scalings: JSON.stringify(scalings) });
}

export function adapterFromBytes(bytes: Uint8Array, source: string): LoraAdapter {
  const { tensors, metadata } = parseSafetensors(bytes, source);
  if (!metadata.chorus_config || !metadata.chorus_scalings) throw new ChorusError(`${source}: not a Chorus adapter object (no chorus_config metadata)`);
  const config = JSON.parse(metadata.chorus_config) as LoraConfig;
  const scalings = JSON.parse(metadata.chorus_scalings) as Record<string, number>;
  const modules = new Map<string, LoraModule>();
  for (const [path, scaling] of Object.entries(scalings)) {
    const a = tensors.get(`${PREFIX}${path}.lora_A.weight`);
    const b = tensors.get(`${PREFIX}${path}.lora_B.weight`);
    if (!a || !b) throw new ChorusError(`${source}: module ${path} lacks lora_A or lora_B`);
    modules.set(path, {
      a: tensorToFloat32(a),
      b: tensorToFloat32(b),
      rank: a.shape[0],
      inFeatures: a.shape[1],
      outFeatures: b.shape[0],
      scaling,
    });
  }
  return { config, modules };
}

/** PEFT's adapter_config.json text for an adapter (the formats library's conventions). */
export function peftConfigText(adapter: LoraAdapter): string {
  return JSON.stringify(peftConfigJson(adapter), null, 2) + '\n';
}

function bytesOf(a: Float32Array): Uint8Array {
  // Little-endian hosts only (every platform Node supports in practice).
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
