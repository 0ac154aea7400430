import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  parseSafetensors,
  readSafetensorsFile,
  SafetensorsFile,
  tensorToFloat32,
} from '../../shared/formats/safetensors.ts';
import { serializeSafetensors, writeSafetensorsFile } from '../../shared/formats/safetensors-write.ts';
import { bf16BitsToNumber, f16BitsToNumber, numberToBf16Bits, numberToF16Bits } from '../../shared/formats/dtypes.ts';
import { ChorusError } from '../../shared/errors.ts';

/** Builds a file from raw header text and data bytes, optionally lying about the header length. */
function rawFile(header: string | object, data: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

function rejects(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(
    () => parseSafetensors(bytes, 'bad.safetensors'),
    (err: unknown) => {
      assert.ok(err instanceof ChorusError, `expected ChorusError, got ${String(err)}`);
      assert.match(err.message, /^bad\.safetensors: /);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

test('round trip F32/F16/BF16/I64/U8 with metadata, header padded to 8', () => {
  const a = new Float32Array([1.5, -2, 3.25, 0, 1e-3, 7]);
  const bytes = serializeSafetensors(
    [
      { name: 'a', dtype: 'F32', shape: [2, 3], data: a },
      { name: 'h', dtype: 'F16', shape: [3], data: [1, -0.5, 65504] },
      { name: 'b', dtype: 'BF16', shape: [2], data: [1, 3.140625] },
      { name: 'i', dtype: 'I64', shape: [2], data: [-5, 2 ** 40] },
      { name: 'u', dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 255]) },
      { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    ],
    { format: 'pt', note: 'x' },
  );
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerLen % 8, 0);
  const parsed = parseSafetensors(bytes, 'rt');
  assert.deepEqual(parsed.metadata, { format: 'pt', note: 'x' });
  assert.deepEqual([...parsed.tensors.keys()], ['a', 'h', 'b', 'i', 'u', 'empty']);
  assert.deepEqual(parsed.tensors.get('a')!.shape, [2, 3]);
  assert.deepEqual(tensorToFloat32(parsed.tensors.get('a')!), a);
  assert.deepEqual([...tensorToFloat32(parsed.tensors.get('h')!)], [1, -0.5, 65504]);
  assert.deepEqual([...tensorToFloat32(parsed.tensors.get('b')!)], [1, 3.140625]);
  assert.deepEqual([...tensorToFloat32(parsed.tensors.get('i')!)], [-5, 2 ** 40]);
  assert.deepEqual([...tensorToFloat32(parsed.tensors.get('u')!)], [1, 2, 255]);
  assert.equal(tensorToFloat32(parsed.tensors.get('empty')!).length, 0);
});

test('file round trip (streamed writer, lazy reader) equals the in-memory serializer', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'st-'));
  try {
    const tensors = new Map([
      ['w', { dtype: 'F32' as const, shape: [3, 2], data: new Float32Array([1, 2, 3, 4, 5, 6]) }],
      ['v', { dtype: 'BF16' as const, shape: [1], data: [0.5] }],
    ]);
    const path = join(dir, 'x.safetensors');
    await writeSafetensorsFile(path, tensors, { format: 'pt' });
    const { readFile } = await import('node:fs/promises');
    assert.deepEqual(new Uint8Array(await readFile(path)), serializeSafetensors(tensors, { format: 'pt' }));
    const whole = await readSafetensorsFile(path);
    assert.deepEqual([...tensorToFloat32(whole.tensors.get('w')!)], [1, 2, 3, 4, 5, 6]);
    const f = await SafetensorsFile.open(path);
    try {
      assert.deepEqual(f.names, ['w', 'v']);
      assert.deepEqual([...(await f.readFloat32('v'))], [0.5]);
      await assert.rejects(f.view('nope'), /no tensor named "nope"/);
    } finally {
      await f.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('F16 decoding matches known bit patterns', () => {
  const known: Array<[number, number]> = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x7bff, 65504],
    [0x0001, 2 ** -24],
    [0x03ff, 1023 * 2 ** -24],
    [0x0400, 2 ** -14],
    [0x3555, 0.333251953125],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
    [0x0000, 0],
  ];
  for (const [bits, value] of known) assert.equal(f16BitsToNumber(bits), value, `0x${bits.toString(16)}`);
  assert.ok(Object.is(f16BitsToNumber(0x8000), -0));
  assert.ok(Number.isNaN(f16BitsToNumber(0x7e00)));
  // Encoding: round to nearest, ties to even; overflow to Inf; underflow below half the smallest subnormal.
  assert.equal(numberToF16Bits(1 + 2 ** -11), 0x3c00);
  assert.equal(numberToF16Bits(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(numberToF16Bits(65519), 0x7bff);
  assert.equal(numberToF16Bits(65520), 0x7c00);
  assert.equal(numberToF16Bits(2 ** -25), 0x0000);
  assert.equal(numberToF16Bits(1.5 * 2 ** -25), 0x0001);
  assert.equal(numberToF16Bits(3 * 2 ** -25), 0x0002);
  // Every finite half survives decode → encode.
  for (let bits = 0; bits < 0x10000; bits++) {
    if ((bits & 0x7c00) === 0x7c00 && bits & 0x3ff) continue;
    assert.equal(numberToF16Bits(f16BitsToNumber(bits)), bits);
  }
});

test('BF16 decoding matches known bit patterns; encoding rounds to nearest even', () => {
  const known: Array<[number, number]> = [
    [0x3f80, 1],
    [0xc000, -2],
    [0x4049, 3.140625],
    [0x7f80, Infinity],
    [0x0001, 2 ** -133],
    [0x7f7f, (2 - 2 ** -7) * 2 ** 127],
    [0x3e80, 0.25],
  ];
  for (const [bits, value] of known) assert.equal(bf16BitsToNumber(bits), value, `0x${bits.toString(16)}`);
  assert.equal(numberToBf16Bits(1 + 2 ** -8), 0x3f80); // tie → even
  assert.equal(numberToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie → even (up)
  assert.equal(numberToBf16Bits(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert.ok(Number.isNaN(bf16BitsToNumber(numberToBf16Bits(NaN))));
  for (let bits = 0; bits < 0x10000; bits++) {
    if ((bits & 0x7f80) === 0x7f80 && bits & 0x7f) continue;
    assert.equal(numberToBf16Bits(bf16BitsToNumber(bits)), bits);
  }
  // tensorToFloat32 on raw little-endian bytes, independent of the encoder.
  const raw = new Uint8Array([0x80, 0x3f, 0x49, 0x40, 0x00, 0xc0]);
  assert.deepEqual([...tensorToFloat32({ dtype: 'BF16', shape: [3], bytes: raw })], [1, 3.140625, -2]);
  const half = new Uint8Array([0x00, 0x3c, 0x55, 0x35, 0x01, 0x00]);
  assert.deepEqual(
    [...tensorToFloat32({ dtype: 'F16', shape: [3], bytes: half })],
    [1, 0.333251953125, Math.fround(2 ** -24)],
  );
  // Unaligned views (odd byteOffset) take the copying path and decode the same.
  const shifted = new Uint8Array(7);
  shifted.set(half, 1);
  assert.deepEqual(
    [...tensorToFloat32({ dtype: 'F16', shape: [3], bytes: shifted.subarray(1) })],
    [1, 0.333251953125, Math.fround(2 ** -24)],
  );
  shifted.set(raw, 1);
  assert.deepEqual([...tensorToFloat32({ dtype: 'BF16', shape: [3], bytes: shifted.subarray(1) })], [1, 3.140625, -2]);
  // Bulk decoding (table / shift paths) agrees with the scalar decoders on every bit pattern.
  const all = new Uint8Array(2 * 65536);
  for (let h = 0; h < 65536; h++) {
    all[2 * h] = h & 0xff;
    all[2 * h + 1] = h >> 8;
  }
  const f16 = tensorToFloat32({ dtype: 'F16', shape: [65536], bytes: all });
  const bf16 = tensorToFloat32({ dtype: 'BF16', shape: [65536], bytes: all });
  for (let h = 0; h < 65536; h++) {
    assert.ok(
      Object.is(f16[h], Math.fround(f16BitsToNumber(h))) || (Number.isNaN(f16[h]) && Number.isNaN(f16BitsToNumber(h))),
      `F16 0x${h.toString(16)}`,
    );
    assert.ok(
      Object.is(bf16[h], bf16BitsToNumber(h)) || (Number.isNaN(bf16[h]) && Number.isNaN(bf16BitsToNumber(h))),
      `BF16 0x${h.toString(16)}`,
    );
  }
});

const ok4 = { t: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } };

test('accepts a space-padded header and null metadata', () => {
  const json = JSON.stringify({ ...ok4, __metadata__: null }) + '     ';
  const parsed = parseSafetensors(rawFile(json, new Uint8Array(4)), 'p');
  assert.equal(parsed.tensors.size, 1);
});

test('rejects malformed files with errors naming the file and the tensor/field', () => {
  rejects(new Uint8Array(5), /shorter than the 8-byte header length/);
  rejects(rawFile(ok4, new Uint8Array(4), 1000n), /header length 1000 runs past the end of the file/);
  rejects(rawFile(ok4, new Uint8Array(4), 2n ** 60n), /exceeds the 100000000-byte limit/);
  rejects(rawFile('{"t": {"dtype": "F32",', new Uint8Array(4)), /not valid JSON/);
  rejects(rawFile(' ' + JSON.stringify(ok4), new Uint8Array(4)), /must start with '\{'/);
  rejects(rawFile('[1,2]'), /must start with '\{'/);
  const badUtf8 = new Uint8Array([3, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0xff, 0x7d]);
  rejects(badUtf8, /header is not valid UTF-8/);
  rejects(
    rawFile({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(4)),
    /tensor "t": data_offsets \[0, 8\] out of range/,
  );
  rejects(
    rawFile(
      { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } },
      new Uint8Array(8),
    ),
    /tensor "b" data_offsets \[4, 8\] overlaps/,
  );
  rejects(
    rawFile(
      { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } },
      new Uint8Array(12),
    ),
    /tensor "b" data_offsets \[8, 12\] leaves a hole/,
  );
  rejects(rawFile(ok4, new Uint8Array(8)), /cover 4 bytes of data but the file holds 8/);
  rejects(
    rawFile({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)),
    /tensor "t": shape \[3\] × F32 needs 12 bytes but data_offsets span 8/,
  );
  rejects(
    rawFile({ t: { dtype: 'Q4', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)),
    /tensor "t": unknown or unsupported dtype "Q4"/,
  );
  rejects(
    rawFile(
      '{"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "t": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}',
      new Uint8Array(2),
    ),
    /duplicate key "t"/,
  );
  rejects(
    rawFile('{"t": {"dtype": "U8", "dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', new Uint8Array(1)),
    /duplicate key "dtype" in "t"/,
  );
  rejects(
    rawFile({ ...ok4, __metadata__: { format: 1 } }, new Uint8Array(4)),
    /"__metadata__"."format" must be a string/,
  );
  rejects(rawFile({ ...ok4, __metadata__: ['x'] }, new Uint8Array(4)), /"__metadata__" must be an object/);
  rejects(
    rawFile({ t: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)),
    /tensor "t": "shape" must be/,
  );
  rejects(rawFile({ t: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4)), /end before begin/);
  rejects(rawFile({ t: { dtype: 'F32', shape: [1] } }, new Uint8Array(4)), /tensor "t": "data_offsets" must be/);
  rejects(rawFile({ t: 5 }), /tensor "t" must be an object/);
});

test('a header claiming a huge tensor in a tiny file is refused without allocating (time: npm run bench -- safetensors)', async () => {
  const lie = rawFile({ t: { dtype: 'F32', shape: [1e12, 1e6], data_offsets: [0, 4e18] } }, new Uint8Array(16));
  const lie2 = rawFile({ t: { dtype: 'F64', shape: [1e9, 1e9], data_offsets: [0, 16] } }, new Uint8Array(16));
  const before = process.memoryUsage().arrayBuffers;
  rejects(lie, /out of range/);
  rejects(lie2, /needs more bytes than the file holds|needs 8e\+18/);
  const dir = await mkdtemp(join(tmpdir(), 'st-'));
  try {
    const path = join(dir, 'lie.safetensors');
    await writeFile(path, rawFile(ok4, new Uint8Array(4), 99_000_000n));
    await assert.rejects(
      SafetensorsFile.open(path),
      (e: Error) => e instanceof ChorusError && /lie\.safetensors: header length 99000000 runs past/.test(e.message),
    );
    await writeFile(path, lie);
    await assert.rejects(SafetensorsFile.open(path), /lie\.safetensors: tensor "t": data_offsets .* out of range/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  assert.ok(process.memoryUsage().arrayBuffers - before < 16 * 1024 * 1024);
});

test('writer rejects data that disagrees with the shape and duplicate names', () => {
  assert.throws(
    () => serializeSafetensors([{ name: 'x', dtype: 'F32', shape: [2, 2], data: new Float32Array(3) }]),
    /tensor "x" has shape \[2, 2\] \(4 elements\) but 3 elements/,
  );
  assert.throws(
    () => serializeSafetensors([{ name: 'x', dtype: 'F16', shape: [2], data: new Uint8Array(3) }]),
    /but 3 bytes/,
  );
  assert.throws(
    () =>
      serializeSafetensors([
        { name: 'x', dtype: 'U8', shape: [1], data: [1] },
        { name: 'x', dtype: 'U8', shape: [1], data: [1] },
      ]),
    /duplicate tensor name "x"/,
  );
});
