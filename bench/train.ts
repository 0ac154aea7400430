// Training throughput of each tensor engine that loads here. Usage:
//   npm run bench -- train [--steps 6] [--cpu-steps 2] [--coto] [--engines wasm,cpu]
//     [--shape smollm2-135m] [--batch B] [--seq T] [--targets q,v] [--checkpointing] [--torch [--threads 1]]
// --shape smollm2-135m: hidden 576, 30 layers, 9 heads / 3 KV, intermediate 1536, vocab 49152, tied.
// --torch runs ../shared/reference/torch_lora_bench.py (Debian's python3-torch, OpenBLAS) on the same shape,
// batch, seq and targets right after each engine, so both see the same machine load.
// Reference configuration: Llama, hidden 256, 4 layers, 8 heads, 4 KV heads, intermediate 688,
// vocab 256, seq_len 128, batch 8, LoRA r 16 (alpha 32) on q,k,v,o, AdamW. CoTo is off by default
// (every layer trains: the slowest case; --coto measures the start of a CoTo run, p = 0.1).
// Each engine runs in its own child process so its peak RSS is its own. One warm-up step, then
// `steps` timed optimiser steps; tokens/s = batch × seq_len × steps / seconds. The engine's raw
// matmul GFLOP/s (bench/matmul.ts) is printed next to it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { availableBackends, describeBackend, initEngine, type BackendChoice } from '../shared/tensor/engine.ts';
import { makeLlamaConfig } from '../shared/model/config.ts';
import { LlamaModel, initRandomWeights } from '../shared/model/llama.ts';
import { AdapterTrainer } from '../shared/train/trainer.ts';
import { COTO_DEFAULTS } from '../shared/coto/schedule.ts';
import { TRAINING_DEFAULTS } from '../shared/train/settings.ts';
import { SplitMix32 } from '../shared/tensor/random.ts';
import { measureMatmulGflops } from './matmul.ts';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const REF = {
  hidden: 256,
  layers: 4,
  heads: 8,
  kvHeads: 4,
  intermediate: 688,
  vocab: 256,
  seqLen: 128,
  batch: 8,
  r: 16,
  tied: false,
  targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
};
if (arg('shape') === 'smollm2-135m') {
  Object.assign(REF, { hidden: 576, layers: 30, heads: 9, kvHeads: 3, intermediate: 1536, vocab: 49152, tied: true });
  Object.assign(REF, { batch: 1, targets: ['q_proj', 'v_proj'] });
} else if (arg('shape')) throw new Error(`--shape: unknown shape ${arg('shape')} (smollm2-135m)`);
if (arg('batch')) REF.batch = Number(arg('batch'));
if (arg('seq')) REF.seqLen = Number(arg('seq'));
if (arg('targets'))
  REF.targets = arg('targets')!
    .split(',')
    .map((t) => `${t}_proj`);

interface ChildResult {
  backend: string;
  engine: string;
  steps: number;
  seconds: number;
  tokensPerSecond: number;
  warmupSeconds: number;
  peakRssMiB: number;
  gflops: Array<{ n: number; gflops: number }>;
}

async function child(backend: BackendChoice, steps: number, coto: boolean): Promise<ChildResult> {
  await initEngine(backend, { quiet: true });
  const config = makeLlamaConfig({
    hiddenSize: REF.hidden,
    numHiddenLayers: REF.layers,
    numAttentionHeads: REF.heads,
    numKeyValueHeads: REF.kvHeads,
    intermediateSize: REF.intermediate,
    vocabSize: REF.vocab,
    tieWordEmbeddings: REF.tied,
  });
  const model = LlamaModel.fromTensors(config, initRandomWeights(config, 1));
  const rng = new SplitMix32(2);
  const examples = Array.from({ length: 64 }, () => ({
    inputIds: Int32Array.from({ length: REF.seqLen }, () => rng.next() % REF.vocab),
    lossMask: Uint8Array.from({ length: REF.seqLen }, (_, t) => (t === 0 ? 0 : 1)),
  }));
  const trainer = AdapterTrainer.create({
    model,
    task: {
      name: 'bench',
      baseModel: 'random',
      data: { train: 'random' },
      replicas: 1,
      seed: 1,
      lora: {
        r: REF.r,
        loraAlpha: 2 * REF.r,
        loraDropout: 0,
        targetModules: REF.targets,
        useRslora: false,
      },
      coto: coto ? COTO_DEFAULTS : null,
      training: { ...TRAINING_DEFAULTS, steps: 1000, batchSize: REF.batch, seqLen: REF.seqLen, lr: 1e-3 },
    },
    examples,
    engine: { gradientCheckpointing: process.argv.includes('--checkpointing') },
  });
  const w0 = performance.now();
  trainer.trainStep();
  const warmupSeconds = (performance.now() - w0) / 1000;
  const start = performance.now();
  for (let i = 0; i < steps; i++) trainer.trainStep();
  const seconds = (performance.now() - start) / 1000;
  trainer.dispose();
  model.dispose();
  const gflops = process.argv.includes('--torch')
    ? []
    : await measureMatmulGflops(backend, { sizes: backend === 'cpu' ? [256] : [512, 1024], seconds: 1 });
  return {
    backend,
    engine: describeBackend(),
    steps,
    seconds,
    tokensPerSecond: (REF.batch * REF.seqLen * steps) / seconds,
    warmupSeconds,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    gflops,
  };
}

const childBackend = arg('child');
if (childBackend) {
  const r = await child(childBackend as BackendChoice, Number(arg('steps')), process.argv.includes('--coto'));
  process.stdout.write(`BENCH_RESULT ${JSON.stringify(r)}\n`);
} else {
  const steps = Number(arg('steps') ?? 6);
  const cpuSteps = Number(arg('cpu-steps') ?? 2);
  const coto = process.argv.includes('--coto');
  console.log(
    `train bench: hidden ${REF.hidden}, ${REF.layers} layers, ${REF.heads} heads / ${REF.kvHeads} kv, ` +
      `intermediate ${REF.intermediate}, vocab ${REF.vocab}, seq ${REF.seqLen}, batch ${REF.batch}, ` +
      `LoRA r ${REF.r} on ${REF.targets.map((t) => t.slice(0, -5)).join(',')}${REF.tied ? ', tied' : ''}, ` +
      `CoTo ${coto ? 'on (p = 0.1)' : 'off (all layers)'}${process.argv.includes('--checkpointing') ? ', recomputation' : ''}`,
  );
  const only = arg('engines')?.split(',');
  const backends = (await availableBackends()).filter((b) => !only || only.includes(b));
  const rows: string[] = [];
  for (const backend of backends) {
    const n = backend === 'cpu' ? cpuSteps : steps;
    const run = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        new URL(import.meta.url).pathname,
        '--child',
        backend,
        '--steps',
        String(n),
        ...(coto ? ['--coto'] : []),
        ...process.argv.slice(2).filter((a) => !['--torch', '--coto'].includes(a)),
      ],
      {
        encoding: 'utf8',
        // The same core count on both sides: BLAS threads for the engine's products (native GEMM),
        // intra-op threads for PyTorch.
        env: { ...process.env, CHORUS_QUIET_BACKEND: '1', CHORUS_BLAS_THREADS: arg('threads') ?? '1' },
      },
    );
    const line = run.stdout.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
    if (!line) {
      rows.push(`${backend.padEnd(11)} failed: ${(run.stderr || run.stdout).trim().split('\n').slice(-3).join(' | ')}`);
      continue;
    }
    const r = JSON.parse(line.slice('BENCH_RESULT '.length)) as ChildResult;
    const g = r.gflops.map((x) => `${x.gflops.toFixed(1)} @${x.n}`).join(', ');
    rows.push(
      `${backend.padEnd(11)} ${r.tokensPerSecond.toFixed(0).padStart(8)} ${(r.seconds / r.steps).toFixed(2).padStart(8)} ` +
        `${String(r.steps).padStart(6)} ${r.peakRssMiB.toFixed(0).padStart(9)}   ${g}${g ? '; ' : ''}${r.engine}`,
    );
    if (process.argv.includes('--torch')) rows.push(torchRow(n));
  }
  console.log(
    `${'engine'.padEnd(11)} ${'tokens/s'.padStart(8)} ${'s/step'.padStart(8)} ${'steps'.padStart(6)} ${'peak RSS'.padStart(9)}   matmul GFLOP/s @n`,
  );
  for (const r of rows) console.log(r);
  console.log('(peak RSS in MiB, per engine process; tokens/s = batch × seq_len per optimiser step)');
}

/** The PyTorch yardstick on the same shape, batch, seq and targets (median step after 2 warm-ups). */
function torchRow(steps: number): string {
  // shared/reference sits beside the repository (or beside one of its parents, for a worktree).
  let script = '';
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir) && !script; dir = dirname(dir)) {
    const path = join(dir, 'shared', 'reference', 'torch_lora_bench.py');
    if (existsSync(path)) script = path;
  }
  if (!script) return `${'torch'.padEnd(11)} skipped: shared/reference/torch_lora_bench.py not found`;
  // One core each by default: tfjs-wasm's own kernels run one thread under Node, and --threads sets
  // the BLAS threads of the engine's products (native GEMM) and PyTorch's alike.
  const threads = arg('threads') ?? '1';
  const args = [
    script,
    ...['hidden', REF.hidden, 'layers', REF.layers, 'heads', REF.heads, 'kv-heads', REF.kvHeads],
    ...['intermediate', REF.intermediate, 'vocab', REF.vocab, 'seq', REF.seqLen, 'batch', REF.batch, 'rank', REF.r],
    ...['targets', REF.targets.map((t) => t.slice(0, -5)).join(','), 'threads', threads, 'steps', steps + 2],
  ].map((a, i) => (i > 0 && i % 2 === 1 ? `--${a}` : String(a)));
  const run = spawnSync('/usr/bin/python3', args, {
    encoding: 'utf8',
    // As the yardstick documents its runs: PyTorch's own intra-op threads, OpenBLAS single-threaded inside
    // them (two threads in both nest to four and ran 2× slower here).
    env: { ...process.env, OPENBLAS_NUM_THREADS: '1' },
  });
  const m = /([\d.]+) tokens\/s \(median step (\d+) ms\), peak RSS (\d+) MiB/.exec(run.stdout);
  if (!m) return `${'torch'.padEnd(11)} failed: ${(run.stderr || run.stdout).trim().split('\n').slice(-2).join(' | ')}`;
  return (
    `${`torch×${threads}`.padEnd(11)} ${Number(m[1]).toFixed(0).padStart(8)} ${(Number(m[2]) / 1000).toFixed(2).padStart(8)} ` +
    `${String(steps).padStart(6)} ${m[3].padStart(9)}   (PyTorch + OpenBLAS, median step)`
  );
}
