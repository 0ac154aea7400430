// `npm run bench -- cluster [--steps N] [--hidden H] [--layers L] [--seq S] [--batch B]`
// The same training run (a) in one process, (b) through the cluster with one worker, (c) with two
// workers as two gradient-synced replicas of half the batch each (same global batch, same result),
// plus (d) two replicas with weight rounds. Prints tokens/s, the overhead ratio b/a, the scaling c/b
// and the bytes moved per round. Needs NATS with JetStream at NATS_URL (default 127.0.0.1:4222).
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { makeLlamaConfig, llamaConfigToJson } from '../shared/model/config.ts';
import { initRandomWeights } from '../shared/model/llama.ts';
import { writeHfModelDir } from '../shared/formats/hf-model.ts';
import { parseJobSpec, taskOf } from '../shared/job/parse.ts';
import { AdapterTrainer } from '../shared/train/trainer.ts';
import { initEngine } from '../shared/tensor/engine.ts';
import { SplitMix32 } from '../shared/tensor/random.ts';
import { loadExamples, loadModel } from '../worker/runner/task-data.ts';
import type { ChorusEvent } from '../shared/nats/events.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { startBenchCluster } from './lib/cluster.ts';

const args = process.argv.slice(2);
const arg = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const cfg = {
  steps: arg('steps', 20),
  hidden: arg('hidden', 64),
  layers: arg('layers', 4),
  seq: arg('seq', 64),
  batch: arg('batch', 8),
  vocab: 64,
  r: 8,
};

const dir = mkdtempSync(join(tmpdir(), 'chorus-bench-'));
const config = makeLlamaConfig({
  hiddenSize: cfg.hidden,
  numHiddenLayers: cfg.layers,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  vocabSize: cfg.vocab,
  intermediateSize: cfg.hidden * 2,
});
await writeHfModelDir(join(dir, 'model'), llamaConfigToJson(config), initRandomWeights(config, 1));
const rng = new SplitMix32(3);
writeFileSync(
  join(dir, 'data.jsonl'),
  Array.from({ length: 64 }, () =>
    JSON.stringify({ input_ids: Array.from({ length: cfg.seq }, () => rng.next() % cfg.vocab) }),
  ).join('\n'),
);

const spec = (over: Record<string, unknown>) =>
  JSON.stringify({
    base_model: join(dir, 'model'),
    seed: 1,
    lora: { r: cfg.r, alpha: 2 * cfg.r, target_modules: ['q_proj', 'v_proj'] },
    training: {
      steps: cfg.steps,
      batch_size: cfg.batch,
      seq_len: cfg.seq,
      lr: 1e-3,
      warmup_steps: 0,
      eval_every: 0,
      checkpoint_every: 1000,
    },
    data: { train: join(dir, 'data.jsonl') },
    ...over,
  });
const tokensPerRun = cfg.steps * cfg.batch * cfg.seq;
console.log(
  `run: hidden ${cfg.hidden}, ${cfg.layers} layers, LoRA r ${cfg.r} on q,v, ${cfg.steps} steps × global batch ${cfg.batch} × seq ${cfg.seq} = ${tokensPerRun} tokens, CoTo on, wasm backend`,
);

// (a) one process.
await initEngine('wasm', { quiet: true });
const task = taskOf(parseJobSpec(spec({})));
const model = await loadModel(task.baseModel);
const trainer = AdapterTrainer.create({
  model,
  task,
  examples: await loadExamples(task.data.train, task.baseModel, config.vocabSize),
});
trainer.trainStep(); // warm-up: kernels compiled
let t0 = performance.now();
for (let s = 1; s < cfg.steps; s++) trainer.trainStep();
const aSeconds = (performance.now() - t0) / 1000;
const params = trainer.layout.size;
trainer.dispose();
const a = ((cfg.steps - 1) * cfg.batch * cfg.seq) / aSeconds;

interface ClusterRun {
  tokensPerSec: number;
  wall: number;
  events: ChorusEvent[];
}

async function clusterRun(workers: number, jobSpec: string): Promise<ClusterRun> {
  const cluster = await startBenchCluster(workers);
  const c = cluster.client;
  try {
    const start = performance.now();
    const id = await c.submit(jobSpec);
    const events: ChorusEvent[] = [];
    const job = await c.wait(id, (e) => events.push(e));
    if (job.state !== 'succeeded') throw new Error(`${job.state}: ${job.reason}`);
    const wall = (performance.now() - start) / 1000;
    // Training throughput: from the first step-1 report to the last step report (steady state,
    // like (a): the first step, which compiles kernels and loads the model, is left out).
    const m = events.filter((e) => e.type === 'metrics');
    const first = Math.max(...m.filter((e) => e.type === 'metrics' && e.data.step === 1).map((e) => e.timeMs));
    const last = Math.max(...m.map((e) => e.timeMs));
    return { tokensPerSec: ((cfg.steps - 1) * cfg.batch * cfg.seq) / ((last - first) / 1000), wall, events };
  } finally {
    await cluster.stop();
  }
}

const b = await clusterRun(1, spec({}));
const half = { ...JSON.parse(spec({})), training: { ...JSON.parse(spec({})).training, batch_size: cfg.batch / 2 } };
delete half.data;
const c = await clusterRun(
  2,
  JSON.stringify({
    ...half,
    tasks: [{ name: 'default', data: { train: join(dir, 'data.jsonl') }, replicas: 2 }],
    sync: { mode: 'gradients' },
  }),
);
const every = Math.max(1, Math.floor(cfg.steps / 4));
const d = await clusterRun(
  2,
  JSON.stringify({
    ...half,
    tasks: [{ name: 'default', data: { train: join(dir, 'data.jsonl') }, replicas: 2 }],
    sync: { mode: 'weights', every, method: 'mean' },
  }),
);

const roundBytes = (() => {
  const ready = d.events.filter((e) => e.type === 'round.adapter_ready');
  const merged = d.events.filter((e) => e.type === 'round.merged');
  const rounds = merged.length;
  const up = ready.reduce((s, e) => s + (e.type === 'round.adapter_ready' ? e.data.bytes : 0), 0);
  // Every replica downloads the merged adapter once per round.
  const down = merged.reduce((s, e) => s + (e.type === 'round.merged' ? e.data.bytes * 2 : 0), 0);
  return { rounds, perRound: (up + down) / Math.max(1, rounds) };
})();
const gradBytesPerStep = 2 /* replicas */ * 2 /* up + down */ * 4 * params;

const f = (x: number) => x.toFixed(0).padStart(8);
console.log(`adapter parameters: ${params} (${((4 * params) / 1024).toFixed(1)} KiB as float32)`);
console.log(`(a) one process                          ${f(a)} tokens/s`);
console.log(`(b) cluster, 1 worker                    ${f(b.tokensPerSec)} tokens/s   job wall ${b.wall.toFixed(1)} s`);
console.log(`(c) cluster, 2 workers, sync gradients   ${f(c.tokensPerSec)} tokens/s   job wall ${c.wall.toFixed(1)} s`);
console.log(
  `(d) cluster, 2 workers, sync weights/${every} ${f(d.tokensPerSec)} tokens/s   job wall ${d.wall.toFixed(1)} s`,
);
console.log(
  `overhead b/a = ${(b.tokensPerSec / a).toFixed(2)}   scaling c/b = ${(c.tokensPerSec / b.tokensPerSec).toFixed(2)}   d/b = ${(d.tokensPerSec / b.tokensPerSec).toFixed(2)}`,
);
console.log(
  `bytes per round: sync gradients ${gradBytesPerStep} B per step (2 replicas × (up + down) × ${4 * params} B);` +
    ` sync weights ${roundBytes.perRound.toFixed(0)} B per round (${roundBytes.rounds} rounds: 2 uploads + 2 downloads of the adapter object)`,
);
console.log(
  `note: this machine has ${(await import('node:os')).cpus().length} cores shared with other work; scaling needs a free core per worker.`,
);
