// Pretrains the demo's base model and writes it as a Hugging Face Llama directory (demo/base/):
//   node --import tsx demo/pretrain.ts [--steps 1600] [--out demo/base] [--seed 7] [--batch 32] [--lr 3e-3] [--warmup 200]
// The base learns the `<op>:<input>=<output>` format on the BASE_OPS only; the demo's tasks are
// held-out ops over the same inputs, so the base knows the format but not the task rules.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initEngine, tf } from '../shared/tensor/engine.ts';
import { BASE_OPS, TASK_OPS, generate, inputOf, makeExample, randomInput, rng, type Example } from './tasks.ts';
import { completionBatch, greedyExactMatch } from './score.ts';
import { byteTokenizerJson } from './byte-tokenizer.ts';
import { forward, hfConfig, initParams, lossOf, type Params, type TinyLlamaConfig } from './tiny-llama.ts';
import { readSafetensorsF32, writeSafetensorsF32 } from './safetensors-lite.ts';

export const BASE_CONFIG: TinyLlamaConfig = {
  vocabSize: 256,
  hidden: 96,
  intermediate: 256,
  layers: 3,
  heads: 4,
  kvHeads: 2,
  ropeTheta: 10000,
  rmsEps: 1e-5,
};
const MAX_POSITIONS = 64;

export function saveBase(dir: string, c: TinyLlamaConfig, params: Params, info: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, v] of params) tensors.set(name, { shape: v.shape, data: v.dataSync() as Float32Array });
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensorsF32(tensors, { format: 'pt', ...info }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(hfConfig(c, MAX_POSITIONS), null, 2) + '\n');
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(byteTokenizerJson()) + '\n');
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    // chorus_tokenizer: the engine's built-in byte tokenizer gives the same ids without loading tokenizer.json.
    JSON.stringify({ tokenizer_class: 'PreTrainedTokenizerFast', add_bos_token: false, add_eos_token: false, model_max_length: MAX_POSITIONS, chorus_tokenizer: 'bytes' }, null, 2) + '\n',
  );
}

export function loadBase(dir: string): { config: TinyLlamaConfig; params: Params } {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const config: TinyLlamaConfig = {
    vocabSize: cfg.vocab_size,
    hidden: cfg.hidden_size,
    intermediate: cfg.intermediate_size,
    layers: cfg.num_hidden_layers,
    heads: cfg.num_attention_heads,
    kvHeads: cfg.num_key_value_heads,
    ropeTheta: cfg.rope_theta,
    rmsEps: cfg.rms_norm_eps,
  };
  const params: Params = new Map();
  for (const [name, t] of readSafetensorsF32(readFileSync(join(dir, 'model.safetensors')))) {
    params.set(name, tf.variable(tf.tensor(t.data, t.shape), false));
  }
  return { config, params };
}

/** The last position's logits of each row, as the scorer wants them. */
export function lastLogitsOf(c: TinyLlamaConfig, params: Params) {
  return (rows: number[][]): Float32Array[] =>
    tf.tidy(() => {
      const logits = forward(c, params, rows);
      const [B, T, V] = logits.shape;
      const last = tf.slice(logits, [0, T - 1, 0], [B, 1, V]).reshape([B, V]);
      const flat = last.dataSync() as Float32Array;
      return rows.map((_, b) => flat.slice(b * V, (b + 1) * V));
    });
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
  const peakLr = Number(values.lr);
  await initEngine(undefined, { quiet: false });
  const params = initParams(BASE_CONFIG, seed);
  const optimizer = tf.train.adam(peakLr, 0.9, 0.98, 1e-8);
  const rand = rng(seed * 7919 + 1);
  // Held-out inputs: the eval probes (and the demo's eval files) use inputs the base never trained on.
  const probes = new Map<string, Example[]>();
  for (const op of [...BASE_OPS, ...TASK_OPS]) probes.set(op.name, generate(op, 64, 1000 + seed));
  const heldOut = new Set([...probes.values()].flat().map(inputOf));
  const warmup = Math.min(Number(values.warmup), steps / 2);
  const t0 = Date.now();
  for (let step = 1; step <= steps; step++) {
    const lr = step < warmup ? (peakLr * step) / warmup : peakLr * 0.5 * (1 + Math.cos((Math.PI * (step - warmup)) / (steps - warmup)));
    (optimizer as unknown as { learningRate: number }).learningRate = lr;
    const examples: Example[] = [];
    while (examples.length < batchSize) {
      const input = randomInput(rand);
      if (heldOut.has(input)) continue;
      examples.push(makeExample(BASE_OPS[Math.floor(rand() * BASE_OPS.length)], input));
    }
    const { ids, weights } = completionBatch(examples);
    const loss = optimizer.minimize(() => lossOf(forward(BASE_CONFIG, params, ids), ids, weights), true)!;
    const lossValue = loss.dataSync()[0];
    loss.dispose();
    if (step % 100 === 0 || step === steps) {
      const rate = ((Date.now() - t0) / step).toFixed(0);
      let line = `step ${step}/${steps} loss ${lossValue.toFixed(4)} lr ${lr.toExponential(2)} ${rate} ms/step`;
      if (step % 500 === 0 || step === steps) {
        for (const [name, ex] of probes) {
          const r = await greedyExactMatch(ex, lastLogitsOf(BASE_CONFIG, params));
          line += ` ${name}=${(100 * r.accuracy).toFixed(0)}%`;
        }
      }
      console.log(line);
    }
  }
  saveBase(values.out!, BASE_CONFIG, params, { chorus_demo: `pretrained ${steps} steps on ${BASE_OPS.map((o) => o.name).join(',')}, seed ${seed}` });
  console.log(`wrote ${values.out}`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
