// F32-only safetensors read/write for the demo's own files (the pretraining script runs without the
// adapter-format library). Layout as the format defines it: u64 LE header length, JSON header padded
// with spaces to a multiple of 8, then the tensors' bytes back to back.
import { ChorusError } from '../shared/errors.ts';

export type F32Tensors = Map<string, { shape: number[]; data: Float32Array }>;

export function writeSafetensorsF32(tensors: F32Tensors, metadata: Record<string, string>): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = [...tensors.keys()].sort();
  for (const name of names) {
    const { shape, data } = tensors.get(name)!;
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.from(json);
  const out = Buffer.alloc(8 + head.length + offset);
  out.writeBigUInt64LE(BigInt(head.length), 0);
  head.copy(out, 8);
  let at = 8 + head.length;
  for (const name of names) {
    const { data } = tensors.get(name)!;
    Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out, at);
    at += data.byteLength;
  }
  return out;
}

export function readSafetensorsF32(buf: Buffer): F32Tensors {
  if (buf.length < 8) throw new ChorusError('safetensors: file shorter than its 8-byte header length');
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.length) throw new ChorusError(`safetensors: header length ${n} runs past the file (${buf.length} bytes)`);
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out: F32Tensors = new Map();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F32') throw new ChorusError(`safetensors: tensor ${name} is ${t.dtype}, only F32 is read here`);
    const [b, e] = t.data_offsets;
    const numel = t.shape.reduce((a, x) => a * x, 1);
    if (e - b !== numel * 4 || 8 + n + e > buf.length) throw new ChorusError(`safetensors: tensor ${name} has bad offsets`);
    const data = new Float32Array(numel);
    Buffer.from(data.buffer).set(buf.subarray(8 + n + b, 8 + n + e));
    out.set(name, { shape: t.shape, data });
  }
  return out;
}
