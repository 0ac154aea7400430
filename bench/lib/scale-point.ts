// One point of the scale bench, run in its own process (bench/scale.ts spawns it) so that its peak RSS and
// wasm heap are its own: plan, load, one warm-up step, timed steps, a forward-only pass for the split.
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { parseLlamaConfig, type LlamaConfig } from '../../shared/model/config.ts';
import { readHfConfig } from '../../shared/formats/hf-model.ts';
import { storedWeightBytes } from '../../shared/formats/hf-stored.ts';
import { loadBaseModel } from '../../shared/train/load.ts';
import { AdapterTrainer } from '../../shared/train/trainer.ts';
import { evaluateExamples } from '../../shared/train/evaluate.ts';
import { TRAINING_DEFAULTS } from '../../shared/train/settings.ts';
import { SplitMix32 } from '../../shared/tensor/random.ts';
import type { MemoryPlan } from '../../shared/train/memory-plan.ts';
import type { LoraConfig } from '../../shared/lora/types.ts';
import type { PointResult } from '../scale.ts';

interface PointOptions {
  shape: string;
  dir: string;
  batch: number;
  seq: number;
  steps: number;
  memory?: number;
  lora: LoraConfig;
  plan: (config: LlamaConfig, stored: number, batch: number, seq: number, memory?: number) => MemoryPlan;
}

/** The wasm module's linear memory: it only grows, so its size is the engine's high-water mark. */
function wasmHeapBytes(): number {
  const b = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return b.wasm?.HEAPU8?.buffer.byteLength ?? tf.memory().numBytes;
}

/** One result line for the parent (the last one printed wins). */
function report(r: PointResult): void {
  process.stdout.write(`SCALE_RESULT ${JSON.stringify(r)}\n`);
}

export async function runPoint(o: PointOptions): Promise<PointResult> {
  const out: PointResult = { shape: o.shape, batch: o.batch, seq: o.seq };
  await initEngine('wasm', { quiet: true });
  const config = parseLlamaConfig(await readHfConfig(o.dir), o.dir);
  let plan: MemoryPlan;
  try {
    plan = o.plan(config, await storedWeightBytes(o.dir), o.batch, o.seq, o.memory);
  } catch (err) {
    return { ...out, refused: (err as Error).message };
  }
  out.plan = plan;
  report(out);
  const t0 = performance.now();
  const model = await loadBaseModel(o.dir, { baseWeights: plan.options.baseWeights });
  out.loadSeconds = (performance.now() - t0) / 1000;
  const rng = new SplitMix32(2);
  const examples = Array.from({ length: 4 * o.batch }, () => ({
    inputIds: Int32Array.from({ length: o.seq }, () => rng.next() % config.vocabSize),
    lossMask: Uint8Array.from({ length: o.seq }, (_, t) => (t === 0 ? 0 : 1)),
  }));
  const training = { ...TRAINING_DEFAULTS, steps: 1000, batchSize: o.batch, seqLen: o.seq };
  const trainerOptions = {
    model,
    task: {
      name: 'scale',
      baseModel: o.dir,
      data: { train: 'random' },
      replicas: 1,
      seed: 1,
      lora: o.lora,
      coto: null,
      training,
    },
    examples,
    engine: plan.options,
  };
  const trainer = AdapterTrainer.create(trainerOptions);
  let w = performance.now();
  trainer.trainStep();
  out.warmupSeconds = (performance.now() - w) / 1000;
  // Memory after one full step, reported now: a point the parent's --timeout cuts short still has its peaks.
  out.heapBytes = wasmHeapBytes();
  out.peakRss = process.resourceUsage().maxRSS * 1024;
  report(out);
  let grad = 0;
  let opt = 0;
  let loss = 0;
  for (let i = 0; i < o.steps; i++) {
    w = performance.now();
    const g = trainer.computeGradients();
    grad += performance.now() - w;
    w = performance.now();
    trainer.applyGradients(g.gradSums, g.tokens);
    opt += performance.now() - w;
    loss = g.lossSum / g.tokens;
  }
  w = performance.now();
  evaluateExamples(model, trainer.runtime, examples.slice(0, o.batch), { batchSize: o.batch, seqLen: o.seq });
  out.forwardSeconds = (performance.now() - w) / 1000;
  out.steps = o.steps;
  out.stepSeconds = (grad + opt) / 1000 / o.steps;
  out.optimizerSeconds = opt / 1000 / o.steps;
  out.tokensPerSecond = (o.batch * o.seq) / out.stepSeconds;
  out.loss = loss;
  out.heapBytes = wasmHeapBytes();
  out.peakRss = process.resourceUsage().maxRSS * 1024;
  trainer.dispose();
  model.dispose();
  return out;
}
