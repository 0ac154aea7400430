// Pretrains the demo's base model and writes it as a Hugging Face Llama directory (demo/base/):
//   node --import tsx demo/pretrain.ts [--steps 1600] [--out demo/base] [--seed 7] [--batch 32] [--lr 3e-3] [--warmup 200]
// The base learns the `<op>:<input>=<output>` format on the BASE_OPS only; the demo's tasks are
// held-out ops over the same inputs, so the base knows the format but not the task rules.
// Everything here is the project's own engine: the shared Llama with its weights trainable
// (LlamaModel.fromTensors(..., { trainable: true })), the shared loss, AdamW, LR schedule, HF writer
// and byte tokenizer; only the data and the recipe are the demo's.
import { parseArgs } from 'node:util';
import { initEngine, tf } from '../shared/tensor/engine.ts';
import { llamaConfigToJson, makeLlamaConfig, type LlamaConfig } from '../shared/model/config.ts';
import { LlamaModel, initRandomWeights } from '../shared/model/llama.ts';
import { nextTokenLoss, type TokenBatch } from '../shared/model/loss.ts';
import { adamwUpdate, type AdamWHyper } from '../shared/train/adamw.ts';
import { learningRate } from '../shared/train/lr-schedule.ts';
import { writeHfModelDir } from '../shared/formats/hf-model.ts';
import { writeByteTokenizer } from '../shared/data/tokenizer.ts';
import { BASE_OPS, TASK_OPS, generate, inputOf, makeExample, randomInput, rng, type Example } from './tasks.ts';
import { completionBatch, greedyExactMatch } from './score.ts';

/** Byte vocabulary (no special tokens), hidden 96, 3 layers, 4 heads / 2 KV heads. */
export const BASE_CONFIG: LlamaConfig = makeLlamaConfig({
  vocabSize: 256,
  hiddenSize: 96,
  intermediateSize: 256,
  numHiddenLayers: 3,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  ropeTheta: 10000,
  rmsNormEps: 1e-5,
  maxPositionEmbeddings: 64,
});

/** completionBatch's rows as the shared loss takes them: targetMask[t + 1] = weights[t]. */
function tokenBatch(examples: Example[]): TokenBatch {
  const { ids, weights } = completionBatch(examples);
  const T = ids[0].length;
  const targetMask = new Float32Array(ids.length * T);
  weights.forEach((w, b) => w.forEach((x, t) => t + 1 < T && (targetMask[b * T + t + 1] = x)));
  return { inputIds: Int32Array.from(ids.flat()), targetMask, batchSize: ids.length, seqLen: T };
}

/** Adam without weight decay (betas 0.9 / 0.98, eps 1e-8) over every base weight, per-tensor state. */
class FullAdam {
  private readonly state = new Map<string, { p: Float32Array; m: Float32Array; v: Float32Array }>();
  private t = 0;

  constructor(private readonly vars: Map<string, tf.Variable>) {
    for (const [name, v] of vars) {
      const p = new Float32Array(v.dataSync() as Float32Array);
      this.state.set(name, { p, m: new Float32Array(p.length), v: new Float32Array(p.length) });
    }
  }

  /** One step on loss(); returns the loss value. */
  step(loss: () => tf.Scalar, lr: number): number {
    const { value, grads } = tf.variableGrads(loss, [...this.vars.values()]);
    const lossValue = value.dataSync()[0];
    value.dispose();
    this.t++;
    const h: AdamWHyper = { lr, beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: 0 };
    for (const [name, variable] of this.vars) {
      const s = this.state.get(name)!;
      const g = grads[variable.name];
      adamwUpdate(s.p, g.dataSync() as Float32Array, s.m, s.v, 0, s.p.length, this.t, 1, h);
      g.dispose();
      tf.tidy(() => variable.assign(tf.tensor(s.p, variable.shape)));
    }
    return lossValue;
  }
}

/** HF's init (N(0, 0.02), norms 1) with the residual-branch outputs (o_proj, down_proj) scaled by 1/√(2·layers), as GPT-2 does. */
function initialWeights(config: LlamaConfig, seed: number) {
  const weights = initRandomWeights(config, seed);
  const scale = 1 / Math.sqrt(2 * config.numHiddenLayers);
  for (const [name, t] of weights)
    if (/\.(o_proj|down_proj)\.weight$/.test(name)) t.data.forEach((x, i) => (t.data[i] = x * scale));
  return weights;
}

async function main() {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '1600' },
      out: { type: 'string', default: new URL('./base', import.meta.url).pathname },
      seed: { type: 'string', default: '7' },
      batch: { type: 'string', default: '32' },
      lr: { type: 'string', default: '3e-3' },
      warmup: { type: 'string', default: '200' },
    },
  });
  const steps = Number(values.steps);
  const seed = Number(values.seed);
  const batchSize = Number(values.batch);
  const schedule = {
    lr: Number(values.lr),
    steps,
    warmupSteps: Math.min(Number(values.warmup), Math.floor(steps / 2)),
    schedule: 'cosine' as const,
    minLrRatio: 0,
  };
  await initEngine(undefined, { quiet: false });
  const model = LlamaModel.fromTensors(BASE_CONFIG, initialWeights(BASE_CONFIG, seed), 'initial weights', {
    trainable: true,
  });
  const optimizer = new FullAdam(model.trainableVariables());
  const rand = rng(seed * 7919 + 1);
  // Held-out inputs: the eval probes (and the demo's eval files) use inputs the base never trained on.
  const probes = new Map<string, Example[]>();
  for (const op of [...BASE_OPS, ...TASK_OPS]) probes.set(op.name, generate(op, 64, 1000 + seed));
  const heldOut = new Set([...probes.values()].flat().map(inputOf));
  const t0 = Date.now();
  for (let step = 1; step <= steps; step++) {
    const lr = learningRate(step - 1, schedule);
    const examples: Example[] = [];
    while (examples.length < batchSize) {
      const input = randomInput(rand);
      if (heldOut.has(input)) continue;
      examples.push(makeExample(BASE_OPS[Math.floor(rand() * BASE_OPS.length)], input));
    }
    const batch = tokenBatch(examples);
    const lossValue = optimizer.step(() => nextTokenLoss(model, batch), lr);
    if (step % 100 === 0 || step === steps) {
      const rate = ((Date.now() - t0) / step).toFixed(0);
      let line = `step ${step}/${steps} loss ${lossValue.toFixed(4)} lr ${lr.toExponential(2)} ${rate} ms/step`;
      if (step % 500 === 0 || step === steps) {
        for (const [name, ex] of probes) {
          const r = greedyExactMatch(ex, model);
          line += ` ${name}=${(100 * r.accuracy).toFixed(0)}%`;
        }
      }
      console.log(line);
    }
  }
  const out = values.out!;
  const provenance = `pretrained by demo/pretrain.ts: ${steps} steps on ${BASE_OPS.map((o) => o.name).join(',')}, seed ${seed}`;
  await writeHfModelDir(out, { ...llamaConfigToJson(BASE_CONFIG), chorus_demo: provenance }, model.toTensorMap());
  await writeByteTokenizer(out, BASE_CONFIG.vocabSize);
  model.dispose();
  console.log(`wrote ${out}`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
