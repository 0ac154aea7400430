// safetensors reader, with the validity rules of the reference implementation
// (huggingface/safetensors `Metadata::validate`). Every size a header claims is checked against
// the bytes actually present before anything is allocated, so a hostile header cannot make us
// allocate gigabytes. Files are read either whole (parseSafetensors) or lazily tensor by tensor
// (SafetensorsFile), which is what multi-GB base models need. The writer is safetensors-write.ts.

import { open, type FileHandle } from 'node:fs/promises';
import { ChorusError, describe } from '../errors.ts';
import { DTYPE_SIZE, decodeToFloat32, isDtype, type Dtype } from './dtypes.ts';
import { findDuplicateKey, parseJsonText } from './json-keys.ts';

export type { Dtype } from './dtypes.ts';

/** The reference implementation's cap on the JSON header. */
const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
  /** Offsets into the data buffer (which starts right after the header). */
  begin: number;
  end: number;
}

export interface TensorView {
  dtype: Dtype;
  shape: number[];
  bytes: Uint8Array;
}

export interface SafetensorsHeader {
  /** In header order. */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** File offset of the data buffer: 8 + header length. */
  dataStart: number;
}

/**
 * Reads the 8-byte little-endian header length and checks it against the file size.
 * Returns the header length N (so the JSON lies at [8, 8+N)).
 */
function readHeaderLength(first8: Uint8Array, fileLength: number, source: string): number {
  if (fileLength < 8 || first8.byteLength < 8) {
    throw new ChorusError(
      `${source}: not a safetensors file (${fileLength} bytes, shorter than the 8-byte header length)`,
    );
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new ChorusError(`${source}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const headerLen = Number(n);
  if (8 + headerLen > fileLength) {
    throw new ChorusError(`${source}: header length ${headerLen} runs past the end of the file (${fileLength} bytes)`);
  }
  return headerLen;
}

/** A header is {name: {dtype, shape: [...], data_offsets: [...]}}: three levels; more is not safetensors. */
const MAX_HEADER_DEPTH = 8;

/** A UTF-16 surrogate half without its partner: a string no UTF-8 encoder can write. */
function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
    }
    return true;
  }
  return false;
}

/** A non-negative integer: a dimension, an offset. */
export function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0; // huge values fail the range checks later
}

/** Parses and validates the JSON header against the total file length. */
function parseHeader(json: Uint8Array, fileLength: number, source: string): SafetensorsHeader {
  if (json[0] === 0xef && json[1] === 0xbb && json[2] === 0xbf) {
    throw new ChorusError(`${source}: header starts with a byte-order mark (the format rules it out)`);
  }
  let text: string;
  try {
    // ignoreBOM: keep a mark the check above missed rather than strip it silently.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(json);
  } catch {
    throw new ChorusError(`${source}: header is not valid UTF-8`);
  }
  if (!text.startsWith('{')) {
    throw new ChorusError(`${source}: header must start with '{' (found ${describe(text.slice(0, 12))})`);
  }
  const raw = parseJsonText(text, `${source}: header`, MAX_HEADER_DEPTH);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ChorusError(`${source}: header must be a JSON object`);
  }
  const dup = findDuplicateKey(text);
  if (dup) {
    const where = dup.path ? ` in ${describe(dup.path, 200)}` : '';
    throw new ChorusError(`${source}: duplicate key ${describe(dup.key, 200)}${where} in the header`);
  }

  const dataStart = 8 + json.byteLength;
  const dataLength = fileLength - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    // JSON's \uD800 escapes can spell lone surrogates, which are not UTF-8 (other readers fail on them).
    if (hasLoneSurrogate(name)) {
      throw new ChorusError(`${source}: tensor name ${describe(name, 80)} holds a lone surrogate (not valid UTF-8)`);
    }
    if (name === '__metadata__') {
      if (value === null) continue;
      if (typeof value !== 'object' || Array.isArray(value)) {
        throw new ChorusError(`${source}: "__metadata__" must be an object of strings`);
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') {
          throw new ChorusError(`${source}: "__metadata__".${describe(k, 80)} must be a string (got ${describe(v)})`);
        }
        metadata[k] = v;
      }
      continue;
    }
    tensors.set(name, parseTensorInfo(name, value, dataLength, source));
  }

  // Sorted by offset, the tensors must tile the data buffer exactly: no holes, no overlap.
  const ordered = [...tensors.entries()].sort((x, y) => x[1].begin - y[1].begin || x[1].end - y[1].end);
  let cursor = 0;
  for (const [name, t] of ordered) {
    if (t.begin !== cursor) {
      const what =
        t.begin < cursor ? 'overlaps the previous tensor' : `leaves a hole (previous data ends at ${cursor})`;
      throw new ChorusError(`${source}: tensor ${describe(name, 200)} data_offsets [${t.begin}, ${t.end}] ${what}`);
    }
    cursor = t.end;
  }
  if (cursor !== dataLength) {
    throw new ChorusError(
      `${source}: tensors cover ${cursor} bytes of data but the file holds ${dataLength} after the header ` +
        `(8 + ${json.byteLength} + ${cursor} != ${fileLength})`,
    );
  }
  return { tensors, metadata, dataStart };
}

function parseTensorInfo(name: string, value: unknown, dataLength: number, source: string): TensorInfo {
  const where = `${source}: tensor ${describe(name, 200)}`;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ChorusError(`${where} must be an object {dtype, shape, data_offsets}`);
  }
  const v = value as Record<string, unknown>;
  if (typeof v.dtype !== 'string') throw new ChorusError(`${where}: "dtype" is missing or not a string`);
  if (!isDtype(v.dtype)) throw new ChorusError(`${where}: unknown or unsupported dtype ${describe(v.dtype, 40)}`);
  if (!Array.isArray(v.shape) || !v.shape.every(isCount)) {
    throw new ChorusError(`${where}: "shape" must be an array of non-negative integers (got ${describe(v.shape)})`);
  }
  const offs = v.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isCount)) {
    throw new ChorusError(
      `${where}: "data_offsets" must be [begin, end] non-negative integers (got ${describe(offs)})`,
    );
  }
  const [begin, end] = offs as [number, number];
  if (end < begin) throw new ChorusError(`${where}: data_offsets [${begin}, ${end}] end before begin`);
  if (end > dataLength) {
    throw new ChorusError(
      `${where}: data_offsets [${begin}, ${end}] out of range (data buffer holds ${dataLength} bytes)`,
    );
  }
  // Products past 2^53 are inexact in floating point: treat them as unbounded so an absurd shape
  // can never round its way into equality with the offsets.
  const shape = v.shape as number[];
  let bytes = shape.includes(0) ? 0 : DTYPE_SIZE[v.dtype];
  for (const d of shape) {
    bytes *= d;
    if (bytes > Number.MAX_SAFE_INTEGER) bytes = Infinity;
  }
  if (bytes !== end - begin) {
    const claimed = Number.isFinite(bytes) ? `${bytes} bytes` : 'more bytes than the file holds';
    throw new ChorusError(
      `${where}: shape [${(v.shape as number[]).join(', ')}] × ${v.dtype} needs ${claimed} but data_offsets span ${end - begin}`,
    );
  }
  return { dtype: v.dtype, shape: [...(v.shape as number[])], begin, end };
}

/** Parses a whole safetensors file held in memory; tensor bytes are views into `bytes`. */
export function parseSafetensors(
  bytes: Uint8Array,
  source: string,
): { tensors: Map<string, TensorView>; metadata: Record<string, string> } {
  const headerLen = readHeaderLength(bytes.subarray(0, 8), bytes.byteLength, source);
  const header = parseHeader(bytes.subarray(8, 8 + headerLen), bytes.byteLength, source);
  const tensors = new Map<string, TensorView>();
  for (const [name, t] of header.tensors) {
    tensors.set(name, {
      dtype: t.dtype,
      shape: t.shape,
      bytes: bytes.subarray(header.dataStart + t.begin, header.dataStart + t.end),
    });
  }
  return { tensors, metadata: header.metadata };
}

/** Any dtype → Float32 (F64/I64 lose precision as float32 must). A fresh array, safe to keep. */
export function tensorToFloat32(view: TensorView): Float32Array {
  return decodeToFloat32(view.dtype, view.bytes);
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A safetensors file opened for lazy, per-tensor reads (the header is validated on open). */
export class SafetensorsFile {
  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    readonly header: SafetensorsHeader,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw new ChorusError(`${path}: cannot open (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    try {
      const size = (await fh.stat()).size;
      const first8 = new Uint8Array(8);
      await fh.read(first8, 0, Math.min(8, size), 0);
      const headerLen = readHeaderLength(first8, size, path);
      const json = new Uint8Array(headerLen);
      await fh.read(json, 0, headerLen, 8);
      return new SafetensorsFile(fh, path, parseHeader(json, size, path));
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  get names(): string[] {
    return [...this.header.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.header.tensors.get(name);
    if (!t) throw new ChorusError(`${this.path}: no tensor named "${name}"`);
    return t;
  }

  async view(name: string): Promise<TensorView> {
    const t = this.info(name);
    const bytes = new Uint8Array(t.end - t.begin);
    let done = 0;
    // One read call may return fewer bytes than asked (and is capped near 2 GB): loop.
    while (done < bytes.byteLength) {
      const { bytesRead } = await this.fh.read(
        bytes,
        done,
        Math.min(bytes.byteLength - done, 1 << 30),
        this.header.dataStart + t.begin + done,
      );
      if (bytesRead === 0)
        throw new ChorusError(`${this.path}: file shrank while reading tensor ${describe(name, 200)}`);
      done += bytesRead;
    }
    return { dtype: t.dtype, shape: t.shape, bytes };
  }

  async readFloat32(name: string): Promise<Float32Array> {
    return tensorToFloat32(await this.view(name));
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Reads a whole file and parses it (small files: adapters, checkpoints). */
export async function readSafetensorsFile(path: string) {
  const f = await SafetensorsFile.open(path);
  try {
    const tensors = new Map<string, TensorView>();
    for (const name of f.names) tensors.set(name, await f.view(name));
    return { tensors, metadata: f.header.metadata };
  } finally {
    await f.close();
  }
}
