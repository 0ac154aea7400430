// How long the safetensors reader takes to refuse files whose header lies about their size (a
// tensor of 10¹⁸ elements in a 16-byte file; a header length of 99 MB in a tiny file). The test
// (test/formats/safetensors.test.ts) checks that they are refused without allocating; the time
// lives here, since a loaded CI machine makes any wall-clock bound in a test flaky.
//   npm run bench -- safetensors [--reps 200]
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseSafetensors, SafetensorsFile } from '../shared/formats/safetensors.ts';

const repsArg = process.argv.indexOf('--reps');
const reps = repsArg > 0 ? Number(process.argv[repsArg + 1]) : 200;

function rawFile(header: object, data: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

const lie = rawFile({ t: { dtype: 'F32', shape: [1e12, 1e6], data_offsets: [0, 4e18] } }, new Uint8Array(16));
const longHeader = rawFile({ t: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4), 99_000_000n);

function refusals(bytes: Uint8Array): number {
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    try {
      parseSafetensors(bytes, 'lie');
      throw new Error('the lying file was accepted');
    } catch (err) {
      if ((err as Error).message === 'the lying file was accepted') throw err;
    }
  }
  return (performance.now() - t0) / reps;
}

const dir = await mkdtemp(join(tmpdir(), 'bench-st-'));
try {
  const path = join(dir, 'lie.safetensors');
  await writeFile(path, longHeader);
  const t0 = performance.now();
  for (let i = 0; i < reps; i++)
    await SafetensorsFile.open(path).then(
      () => Promise.reject(new Error('accepted')),
      () => undefined,
    );
  const fileMs = (performance.now() - t0) / reps;
  console.log(`huge tensor in a 16-byte buffer: ${(refusals(lie) * 1000).toFixed(1)} µs per refusal (${reps} reps)`);
  console.log(`99 MB header length in a tiny file: ${(fileMs * 1000).toFixed(1)} µs per refusal (open + read)`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
