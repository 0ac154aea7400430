// The memory plan's decisions: what `auto` resolves to as the batch grows against a limit, that fixed choices
// are obeyed or refused by name, and that a refusal names the estimate, the limit and the fields to change.
// The estimate's figures against measured peaks live in `npm run bench -- scale` (docs/SCALE.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeLlamaConfig, type LlamaConfig } from '../../shared/model/config.ts';
import {
  GiB,
  baseParameters,
  estimateMemory,
  loraParameters,
  planMemory,
  type MemoryLimits,
  type PlanRequest,
} from '../../shared/train/memory-plan.ts';
import { memoryLimits } from '../../shared/train/memory-limits.ts';
import { ChorusError } from '../../shared/errors.ts';

const smol = makeLlamaConfig({
  hiddenSize: 576,
  numHiddenLayers: 30,
  numAttentionHeads: 9,
  numKeyValueHeads: 3,
  intermediateSize: 1536,
  vocabSize: 49152,
  tieWordEmbeddings: true,
  maxPositionEmbeddings: 8192,
});
const wasm: MemoryLimits = {
  engine: { bytes: 4 * GiB, what: 'the wasm heap' },
  host: { bytes: 24 * GiB, what: "this machine's memory" },
  engineInHost: true,
  packsWeights: true,
};

function req(over: Partial<PlanRequest['training']> = {}, limits = wasm, config: LlamaConfig = smol): PlanRequest {
  return {
    config,
    training: { batchSize: 1, seqLen: 128, gradientCheckpointing: 'auto', baseWeights: 'auto', ...over },
    lora: { r: 16, targetModules: ['q_proj', 'v_proj'], loraDropout: 0 },
    storedBytes: 2 * baseParameters(config).total,
    limits,
  };
}

test('parameter counts: SmolLM2-135M shape is 134.5M (tied), LoRA r16 on q,v is 1.84M', () => {
  assert.equal(baseParameters(smol).total, 134_515_008);
  // q: 16 · (576 + 576), v: 16 · (576 + 192), per layer, 30 layers.
  assert.equal(loraParameters(smol, { r: 16, targetModules: ['q_proj', 'v_proj'] }), 30 * 16 * (1152 + 768));
});

test('auto picks the fastest option that fits: plain, then recomputation, then streamed weights', () => {
  const small = planMemory(req());
  assert.deepEqual([small.options.gradientCheckpointing, small.options.baseWeights], [false, 'resident']);
  assert.equal(small.options.attentionBlock, undefined);
  const mid = planMemory(req({ batchSize: 4 }));
  assert.deepEqual([mid.options.gradientCheckpointing, mid.options.baseWeights], [true, 'resident']);
  const big = planMemory(req({ batchSize: 8, seqLen: 512 }));
  assert.deepEqual([big.options.gradientCheckpointing, big.options.baseWeights], [true, 'streamed']);
  assert.match(big.summary, /gradient_checkpointing auto→true, base_weights auto→streamed/);
  // Each step down the list lowers the engine estimate for the same batch.
  const at = (gc: boolean, bw: 'resident' | 'streamed') =>
    estimateMemory(req({ batchSize: 8, seqLen: 512 }), {
      gradientCheckpointing: gc,
      baseWeights: bw,
      headChunkTokens: 256,
    }).engineBytes;
  assert.ok(at(false, 'resident') > at(true, 'resident') && at(true, 'resident') > at(true, 'streamed'));
});

test('long sequences get attention blocks; a large vocabulary gets smaller head chunks', () => {
  const long = planMemory(req({ seqLen: 4096 }));
  assert.ok(
    long.options.attentionBlock! >= 64 && long.options.attentionBlock! < 4096,
    `${long.options.attentionBlock}`,
  );
  const short = planMemory(req({ seqLen: 256 }));
  assert.equal(short.options.attentionBlock, undefined);
  const bigVocab = { ...smol, vocabSize: 128256 };
  assert.ok(planMemory(req({}, wasm, bigVocab)).options.headChunkTokens < planMemory(req()).options.headChunkTokens);
});

test('fixed choices are obeyed, and a fixed choice that does not fit is refused naming the field to change', () => {
  const forced = planMemory(req({ gradientCheckpointing: true, baseWeights: 'streamed' }));
  assert.deepEqual([forced.options.gradientCheckpointing, forced.options.baseWeights], [true, 'streamed']);
  assert.match(forced.summary, /gradient_checkpointing true, base_weights streamed/);
  assert.throws(
    () => planMemory(req({ batchSize: 8, seqLen: 512, gradientCheckpointing: false })),
    (e: Error) =>
      e instanceof ChorusError &&
      /needs about [\d.]+ GiB of engine memory, over the wasm heap \(4\.00 GiB/.test(e.message) &&
      /set training\.gradient_checkpointing: auto/.test(e.message),
  );
  assert.throws(
    () => planMemory(req({ gradientCheckpointing: false, baseWeights: 'streamed' })),
    /training\.base_weights: streamed .* training\.gradient_checkpointing cannot be false/,
  );
});

test('nothing fits: one error with the estimate, the limit and what to change; seq_len past the positions', () => {
  const tight: MemoryLimits = {
    engine: null,
    host: { bytes: 1 * GiB, what: 'device cpu:0 (--memory)' },
    engineInHost: true,
  };
  assert.throws(
    () => planMemory({ ...req({ batchSize: 4, seqLen: 512 }, tight), field: 'tasks[1].training' }),
    (e: Error) =>
      /^tasks\[1\]\.training: batch_size 4 × seq_len 512 .* needs about [\d.]+ GiB of process memory, over device cpu:0 \(--memory\) \(1\.00 GiB/.test(
        e.message,
      ) && /lower tasks\[1\]\.training\.batch_size, or lower tasks\[1\]\.training\.seq_len/.test(e.message),
  );
  assert.throws(
    () => planMemory(req({ seqLen: 8193 })),
    /training\.seq_len: 8193 exceeds the model's max_position_embeddings \(8192\)/,
  );
});

test('native GEMM: no XNNPACK packed copies, so resident weights count once; unknown counts them twice', () => {
  assert.equal(memoryLimits('wasm').packsWeights, true);
  assert.equal(memoryLimits('wasm', { nativeGemm: false }).packsWeights, true);
  const blas = memoryLimits('wasm', { nativeGemm: true });
  assert.equal(blas.packsWeights, false);
  const options = { gradientCheckpointing: false, baseWeights: 'resident', headChunkTokens: 256 } as const;
  const packed = estimateMemory(req({}, memoryLimits('wasm')), options).engineBytes;
  const once = estimateMemory(req({}, blas), options).engineBytes;
  const p = baseParameters(smol);
  // Every layer plus the embedding and the head's copy: 4 bytes each, counted once less.
  assert.equal(packed - once, (smol.numHiddenLayers * p.perLayer + 2 * p.embedding) * 4);
});

test('limits: wasm caps the engine at 4 GiB; a GPU budget bounds the engine, a CPU budget the process', () => {
  const w = memoryLimits('wasm', { budgetBytes: 6 * GiB, device: 'cpu:0' });
  assert.equal(w.engine!.bytes, 4 * GiB);
  assert.equal(w.host!.bytes, 6 * GiB);
  assert.match(w.host!.what, /cpu:0's memory budget \(--memory\)/);
  const g = memoryLimits('tensorflow', { deviceBytes: 80 * GiB, gpu: true, device: 'gpu:0' });
  assert.equal(g.engine!.bytes, 80 * GiB);
  assert.equal(g.engineInHost, false);
  assert.equal(
    memoryLimits('tensorflow', { deviceBytes: 80 * GiB, budgetBytes: 20 * GiB, gpu: true }).engine!.bytes,
    20 * GiB,
  );
  // A GPU's memory does not count in the process: a 1B model at 8 × 512 fits an 80 GiB GPU with resident weights.
  const oneB = makeLlamaConfig({
    hiddenSize: 2048,
    numHiddenLayers: 16,
    numAttentionHeads: 32,
    numKeyValueHeads: 8,
    intermediateSize: 8192,
    vocabSize: 128256,
    tieWordEmbeddings: true,
  });
  // XNNPACK's packed weight copies are counted on wasm only.
  const opts = { gradientCheckpointing: true, baseWeights: 'resident' as const, headChunkTokens: 256 };
  const packed = estimateMemory(req({}, wasm), opts).engineBytes;
  const unpacked = estimateMemory(req({}, { ...wasm, packsWeights: false }), opts).engineBytes;
  // Every layer, the embedding and the transposed head, once more in float32.
  const resident = 4 * (baseParameters(smol).total - smol.hiddenSize + smol.vocabSize * smol.hiddenSize);
  assert.ok(Math.abs(packed - unpacked - resident) < 1, `${packed - unpacked} vs ${resident}`);
  const plan = planMemory(req({ batchSize: 8, seqLen: 512 }, g, oneB));
  assert.equal(plan.options.baseWeights, 'resident');
  assert.ok(plan.estimate.hostBytes < plan.estimate.engineBytes);
  assert.throws(() => planMemory(req({ batchSize: 8, seqLen: 512 }, wasm, oneB)), /over the wasm heap/);
});
