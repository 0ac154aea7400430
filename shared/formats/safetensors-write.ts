// safetensors writer: whole files in memory (serializeSafetensors) or tensor by tensor to disk
// (writeSafetensorsFile), with an 8-byte-aligned data buffer. What it writes passes the reader's
// checks (safetensors.ts): names unique, shapes valid, data sized to shape × dtype.
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { ChorusError, describe } from '../errors.ts';
import { DTYPE_SIZE, encodeFromNumbers, isDtype, type Dtype, type NumericData } from './dtypes.ts';
import { isCount, numelOf } from './safetensors.ts';

/**
 * `data` as Uint8Array = bytes already in `dtype`'s encoding; numbers = values to encode; a function = values made
 * when the file writer reaches this tensor (so a multi-GB file never holds more than one tensor in memory).
 */
export interface TensorInput {
  dtype: Dtype;
  shape: number[];
  data: Uint8Array | NumericData | (() => Uint8Array | NumericData);
}

export type TensorInputs = Map<string, TensorInput> | Array<TensorInput & { name: string }>;

function entriesOf(tensors: TensorInputs): Array<[string, TensorInput]> {
  const list: Array<[string, TensorInput]> =
    tensors instanceof Map ? [...tensors.entries()] : tensors.map((t) => [t.name, t]);
  const seen = new Set<string>();
  for (const [name] of list) {
    if (name === '__metadata__') throw new ChorusError('safetensors: "__metadata__" cannot be a tensor name');
    if (seen.has(name)) throw new ChorusError(`safetensors: duplicate tensor name "${name}"`);
    seen.add(name);
  }
  return list;
}

function encodeTensor(name: string, t: TensorInput): Uint8Array {
  if (!isDtype(t.dtype))
    throw new ChorusError(`safetensors: tensor ${describe(name, 200)} has unknown dtype "${String(t.dtype)}"`);
  if (!t.shape.every((d) => isCount(d)))
    throw new ChorusError(`safetensors: tensor ${describe(name, 200)} has an invalid shape [${t.shape.join(', ')}]`);
  const numel = numelOf(t.shape);
  const data = typeof t.data === 'function' ? t.data() : t.data;
  const bytes = data instanceof Uint8Array ? data : encodeFromNumbers(t.dtype, data, `tensor ${describe(name, 200)}`);
  if (bytes.byteLength !== numel * DTYPE_SIZE[t.dtype]) {
    const got = data instanceof Uint8Array ? `${bytes.byteLength} bytes` : `${data.length} elements`;
    throw new ChorusError(
      `safetensors: tensor ${describe(name, 200)} has shape [${t.shape.join(', ')}] (${numel} elements) but ${got} of data`,
    );
  }
  return bytes;
}

/** entries: [name, byte length, tensor] in data order. */
function buildHeader(entries: Array<[string, number, TensorInput]>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new ChorusError(`safetensors: metadata "${k}" must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, size, t] of entries) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Pad with spaces so the data buffer starts 8-byte aligned (typed-array views need alignment).
  const padded = new Uint8Array(Math.ceil(json.byteLength / 8) * 8).fill(0x20);
  padded.set(json);
  const out = new Uint8Array(8 + padded.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded.byteLength), true);
  out.set(padded, 8);
  return out;
}

export function serializeSafetensors(tensors: TensorInputs, metadata?: Record<string, string>): Uint8Array {
  const entries = entriesOf(tensors).map(([name, t]) => [name, encodeTensor(name, t), t] as const);
  const head = buildHeader(
    entries.map(([name, bytes, t]) => [name, bytes.byteLength, t]),
    metadata,
  );
  const total = head.byteLength + entries.reduce((s, e) => s + e[1].byteLength, 0);
  const out = new Uint8Array(total);
  out.set(head);
  let at = head.byteLength;
  for (const [, bytes] of entries) {
    out.set(bytes, at);
    at += bytes.byteLength;
  }
  return out;
}

/** Writes tensor by tensor (no whole-file buffer), to `path` via a temporary file and rename. */
export async function writeSafetensorsFile(
  path: string,
  tensors: TensorInputs,
  metadata?: Record<string, string>,
): Promise<void> {
  const list = entriesOf(tensors);
  // Encode lazily per tensor but compute sizes first: the header needs every offset.
  const sizes = list.map(([name, t]) => {
    if (!isDtype(t.dtype))
      throw new ChorusError(`safetensors: tensor ${describe(name, 200)} has unknown dtype "${String(t.dtype)}"`);
    return numelOf(t.shape) * DTYPE_SIZE[t.dtype];
  });
  const head = buildHeader(
    list.map(([name, t], i) => [name, sizes[i], t]),
    metadata,
  );
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fh = await open(tmp, 'w');
  try {
    await writeAll(fh, head);
    for (const [name, t] of list) await writeAll(fh, encodeTensor(name, t));
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(bytes.byteLength - done, 1 << 30));
    done += bytesWritten;
  }
}
