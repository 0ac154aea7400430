// Reading a Hugging Face model directory at size: every tensor stays in the dtype it was stored in
// (StoredTensor: F32, F16 or BF16 bytes), read tensor by tensor into a buffer of exactly its size, so
// loading a BF16 model holds its 2 bytes per parameter once, never a float32 copy or a whole shard.
// Other dtypes (F64, F8, integers) are widened to F32 on the way in. Every shard is opened and its header
// checked against its size before any tensor is read: a missing or truncated shard is an error naming the
// file, before minutes of loading.
import { join } from 'node:path';
import { ChorusError } from '../errors.ts';
import { checkFinite, firstNonFiniteStored } from '../lora/check.ts';
import { StoredTensor, isStoredDtype } from '../tensor/stored.ts';
import { DTYPE_SIZE } from './dtypes.ts';
import { locateWeights, readHfConfig, WEIGHTS_INDEX, type HfConfig } from './hf-model.ts';
import { SafetensorsFile, numelOf, tensorToFloat32, type TensorView } from './safetensors.ts';

export type StoredTensors = Map<string, StoredTensor>;

interface OpenShards {
  /** tensor name → its shard */
  byName: Map<string, SafetensorsFile>;
  files: SafetensorsFile[];
}

async function openShards(dir: string, filter?: (name: string) => boolean): Promise<OpenShards> {
  const where = await locateWeights(dir);
  const byFile = new Map<string, string[]>();
  for (const [name, file] of where) {
    if (filter && !filter(name)) continue;
    byFile.set(file, [...(byFile.get(file) ?? []), name]);
  }
  const files: SafetensorsFile[] = [];
  const byName = new Map<string, SafetensorsFile>();
  try {
    for (const [file, names] of byFile) {
      let f: SafetensorsFile;
      try {
        f = await SafetensorsFile.open(file);
      } catch (err) {
        const missing = err instanceof ChorusError && /ENOENT/.test(err.message);
        if (!missing) throw err;
        throw new ChorusError(`${join(dir, WEIGHTS_INDEX)}: shard ${file} (holding "${names[0]}") does not exist`);
      }
      files.push(f);
      for (const name of names) {
        if (!f.header.tensors.has(name)) {
          throw new ChorusError(`${file}: missing tensor "${name}" (the weights index says it is in this shard)`);
        }
        byName.set(name, f);
      }
    }
  } catch (err) {
    await Promise.all(files.map((f) => f.close()));
    throw err;
  }
  return { byName, files };
}

/** A widened tensor of another dtype (F64, integers), refused when a value is not finite. */
function finiteFloat32(view: TensorView, name: string, file: string): Float32Array {
  const data = tensorToFloat32(view);
  checkFinite(data, name, file);
  return data;
}

/** config.json and every tensor, each in its stored dtype. */
export async function readHfModelStored(
  dir: string,
  opts: { filter?: (name: string) => boolean } = {},
): Promise<{ config: HfConfig; tensors: StoredTensors }> {
  const config = await readHfConfig(dir);
  const { byName, files } = await openShards(dir, opts.filter);
  const tensors: StoredTensors = new Map();
  try {
    for (const [name, f] of byName) {
      const view = await f.view(name);
      const what = `${f.path}: tensor "${name}"`;
      // One NaN in a base weight turns every loss into NaN: refuse it here, by name, in its stored bytes.
      const bad = firstNonFiniteStored(view.dtype, view.bytes);
      if (bad >= 0) throw new ChorusError(`${what} holds a non-finite value (at element ${bad})`);
      tensors.set(
        name,
        isStoredDtype(view.dtype)
          ? new StoredTensor(view.dtype, view.shape, view.bytes, what)
          : new StoredTensor('F32', view.shape, new Uint8Array(finiteFloat32(view, name, f.path).buffer), what),
      );
    }
  } finally {
    await Promise.all(files.map((f) => f.close()));
  }
  return { config, tensors };
}

/** What the weights take once loaded as StoredTensors (from the headers alone: nothing is read). */
export async function storedWeightBytes(dir: string, filter?: (name: string) => boolean): Promise<number> {
  const { byName, files } = await openShards(dir, filter);
  try {
    let bytes = 0;
    for (const [name, f] of byName) {
      const info = f.info(name);
      bytes += numelOf(info.shape) * (isStoredDtype(info.dtype) ? DTYPE_SIZE[info.dtype] : 4);
    }
    return bytes;
  } finally {
    await Promise.all(files.map((f) => f.close()));
  }
}
