// Loading at size: tensors keep their stored dtype, shards are read tensor by tensor, and a missing or
// truncated shard is an error naming the file before any tensor is read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readdir, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readHfModelDir, writeHfModelDir, type HfTensors } from '../../shared/formats/hf-model.ts';
import { readHfModelStored, storedWeightBytes } from '../../shared/formats/hf-stored.ts';
import { writeSafetensorsFile } from '../../shared/formats/safetensors-write.ts';
import { numberToBf16Bits, bf16BitsToNumber } from '../../shared/formats/dtypes.ts';

const config = { model_type: 'llama', hidden_size: 8, num_hidden_layers: 1, vocab_size: 16, tie_word_embeddings: true };

function tensors(): HfTensors {
  const out: HfTensors = new Map();
  let k = 0;
  for (const [name, shape] of [
    ['model.embed_tokens.weight', [16, 8]],
    ['model.layers.0.self_attn.q_proj.weight', [8, 8]],
    ['model.layers.0.mlp.up_proj.weight', [12, 8]],
    ['model.norm.weight', [8]],
  ] as const) {
    const n = shape.reduce((a: number, b: number) => a * b, 1);
    out.set(name, { shape: [...shape], data: Float32Array.from({ length: n }, () => Math.sin(++k * 0.71) * 3) });
  }
  return out;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'hf-stored-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('sharded BF16: every tensor stays BF16 with its stored bits; widening equals the float32 reader', () =>
  withDir(async (dir) => {
    const t = tensors();
    await writeHfModelDir(dir, config, t, { dtype: 'BF16', shardBytes: 300 });
    assert.ok((await readdir(dir)).filter((f) => f.startsWith('model-')).length >= 3);
    const { tensors: stored } = await readHfModelStored(dir);
    const { tensors: wide } = await readHfModelDir(dir);
    assert.deepEqual([...stored.keys()].sort(), [...t.keys()].sort());
    let bytes = 0;
    for (const [name, src] of t) {
      const s = stored.get(name)!;
      assert.equal(s.dtype, 'BF16', name);
      assert.deepEqual(s.shape, src.shape);
      assert.equal(s.byteLength, 2 * src.data.length, `${name}: 2 bytes per value, no float32 copy`);
      // Each value is the BF16 rounding of what was written, bit for bit.
      const want = Float32Array.from(src.data, (v) => bf16BitsToNumber(numberToBf16Bits(v)));
      assert.deepEqual(s.toFloat32(), want, name);
      assert.deepEqual(s.toFloat32(), wide.get(name)!.data, name);
      bytes += s.byteLength;
    }
    assert.equal(await storedWeightBytes(dir), bytes);
  }));

test('F64 and F16 tensors: F16 kept, F64 widened to F32 on the way in', () =>
  withDir(async (dir) => {
    await writeHfModelDir(dir, config, tensors(), { dtype: 'F16' });
    const { tensors: f16 } = await readHfModelStored(dir);
    assert.equal(f16.get('model.norm.weight')!.dtype, 'F16');
    await writeSafetensorsFile(join(dir, 'model.safetensors'), [
      { name: 'model.norm.weight', dtype: 'F64', shape: [3], data: [1.5, -2, 1e-3] },
    ]);
    const { tensors: f64 } = await readHfModelStored(dir);
    const n = f64.get('model.norm.weight')!;
    assert.equal(n.dtype, 'F32');
    assert.deepEqual([...n.toFloat32()], [1.5, -2, Math.fround(1e-3)]);
    assert.equal(await storedWeightBytes(dir), 12);
  }));

test('a missing shard and a truncated shard are errors naming the file', () =>
  withDir(async (dir) => {
    await writeHfModelDir(dir, config, tensors(), { dtype: 'BF16', shardBytes: 300 });
    const shards = (await readdir(dir)).filter((f) => f.startsWith('model-')).sort();
    const last = join(dir, shards[shards.length - 1]);
    const fh = await open(last, 'r+');
    const size = (await fh.stat()).size;
    await fh.truncate(size - 10);
    await fh.close();
    for (const read of [() => readHfModelStored(dir), () => storedWeightBytes(dir)]) {
      await assert.rejects(
        read(),
        (err: Error) => err.message.includes(last) && /cover|past the end|out of range/.test(err.message),
      );
    }
    await unlink(join(dir, shards[0]));
    await assert.rejects(readHfModelStored(dir), (err: Error) =>
      new RegExp(`shard .*${shards[0]} .*does not exist`).test(err.message),
    );
  }));
