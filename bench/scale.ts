// Training at real sizes on one CPU runner (wasm engine). Usage:
//   npm run bench -- scale [--quick] [--shapes 135m,360m,1b] [--points 8x512,1x4096] [--steps 2]
//                          [--models DIR] [--memory 8GiB] [--timeout 900]
// For each Llama shape of issue 14 (random BF16 weights written once by `chorus init-model` into --models,
// default $TMPDIR/chorus-scale-models) and each batch × seq point, a child process plans, loads and trains
// LoRA r16 on q,v: one warm-up step, then --steps timed steps. It prints tokens/s, seconds per step split
// into forward (an evaluation pass over the same batch), backward (the gradient pass minus that forward) and
// optimizer, peak RSS, the wasm heap's high-water mark, the plan's estimate beside them and what `auto` chose.
// A point the plan refuses prints the refusal; a child that dies prints how. Last, the largest batch × seq
// the plan accepts per shape. --quick: the small points only (minutes).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir, totalmem, cpus } from 'node:os';
import { join } from 'node:path';
import { initModel } from '../cli/commands/init-model.ts';
import { parseByteSize } from '../cli/commands/flags.ts';
import { parseLlamaConfig, type LlamaConfig } from '../shared/model/config.ts';
import { readHfConfig } from '../shared/formats/hf-model.ts';
import { storedWeightBytes } from '../shared/formats/hf-stored.ts';
import { GiB, planMemory, type MemoryPlan } from '../shared/train/memory-plan.ts';
import { memoryLimits } from '../shared/train/memory-limits.ts';
import { errorMessage } from '../shared/errors.ts';
import { describeBackend, initEngine } from '../shared/tensor/engine.ts';
import { nativeGemmInfo } from '../shared/tensor/native-gemm.ts';

interface Shape {
  hidden: number;
  layers: number;
  heads: number;
  kv: number;
  intermediate: number;
  vocab: number;
  llama3?: boolean;
}

const SHAPES: Record<string, Shape> = {
  '135m': { hidden: 576, layers: 30, heads: 9, kv: 3, intermediate: 1536, vocab: 49152 },
  '360m': { hidden: 960, layers: 32, heads: 15, kv: 5, intermediate: 2560, vocab: 49152 },
  '1b': { hidden: 2048, layers: 16, heads: 32, kv: 8, intermediate: 8192, vocab: 128256, llama3: true },
};
/** The issue's table, then smaller points that show the trend. */
const FULL_POINTS: Record<string, string[]> = {
  '135m': ['1x128', '4x128', '8x512', '1x4096'],
  '360m': ['1x128', '4x512'],
  '1b': ['1x128', '1x512'],
};
const QUICK_POINTS: Record<string, string[]> = { '135m': ['1x128', '4x128'], '360m': ['1x128'], '1b': ['1x64'] };
const LORA = { r: 16, loraAlpha: 32, loraDropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false };

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const gib = (b: number) => (b / GiB).toFixed(2);

async function ensureModel(root: string, name: string, s: Shape): Promise<string> {
  const dir = join(root, `${name}-bf16`);
  // Written once and reused: init-model writes config.json first and the tokenizer last (none here), so a
  // finished directory is one whose weights index or single file exists.
  if (existsSync(join(dir, 'model.safetensors.index.json')) || existsSync(join(dir, 'model.safetensors'))) return dir;
  const t0 = performance.now();
  await initModel({
    arch: 'llama',
    hidden: String(s.hidden),
    layers: String(s.layers),
    heads: String(s.heads),
    kvHeads: String(s.kv),
    intermediate: String(s.intermediate),
    vocab: String(s.vocab),
    maxPositions: s.llama3 ? '131072' : '8192',
    ropeScaling: s.llama3 ? 'llama3' : undefined,
    tie: true,
    dtype: 'bf16',
    maxShardSize: '1GB',
    seed: '1',
    tokenizer: false,
    force: true,
    out: dir,
  });
  console.log(`  wrote ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return dir;
}

function planFor(config: LlamaConfig, storedBytes: number, batchSize: number, seqLen: number, memory?: number) {
  return planMemory({
    config,
    training: { batchSize, seqLen, gradientCheckpointing: 'auto', baseWeights: 'auto' },
    lora: LORA,
    storedBytes,
    limits: memoryLimits('wasm', { budgetBytes: memory, nativeGemm: nativeGemmInfo().active }),
  });
}

export interface PointResult {
  shape: string;
  batch: number;
  seq: number;
  refused?: string;
  /** The child died or ran past --timeout. */
  failed?: string;
  /** VmHWM of the child, read from /proc while it ran. */
  peakRssSampled?: number;
  plan?: MemoryPlan;
  loadSeconds?: number;
  warmupSeconds?: number;
  forwardSeconds?: number;
  stepSeconds?: number;
  optimizerSeconds?: number;
  tokensPerSecond?: number;
  peakRss?: number;
  heapBytes?: number;
  steps?: number;
  loss?: number;
}

async function child(): Promise<PointResult> {
  const { runPoint } = await import('./lib/scale-point.ts');
  return runPoint({
    shape: arg('child')!,
    dir: arg('dir')!,
    batch: Number(arg('batch')),
    seq: Number(arg('seq')),
    steps: Number(arg('steps')),
    memory: parseByteSize(arg('memory'), '--memory'),
    lora: LORA,
    plan: planFor,
  });
}

function row(r: PointResult): string {
  const head = `${r.shape.padEnd(5)} ${String(r.batch).padStart(2)}×${String(r.seq).padEnd(5)}`;
  if (r.refused) return `${head} refused by the plan: ${r.refused}`;
  if (r.failed && !r.plan) {
    const peak = r.peakRssSampled ? ` (peak RSS while it ran ${gib(r.peakRssSampled)} GiB)` : '';
    return `${head} did not finish: ${r.failed}${peak}`;
  }
  const p = r.plan!;
  const o = p.options;
  const chose = `ckpt ${o.gradientCheckpointing ? 'on' : 'off'}, ${o.baseWeights}${o.attentionBlock ? `, attn ${o.attentionBlock}` : ''}, head ${o.headChunkTokens}`;
  if (r.stepSeconds === undefined) {
    const planned = `plan: RSS ${gib(p.estimate.hostBytes)} GiB, heap ${gib(p.estimate.engineBytes)} GiB`;
    const sampled = r.peakRssSampled ? `, peak RSS while it ran ${gib(r.peakRssSampled)} GiB` : '';
    const after = r.heapBytes
      ? `after the warm-up step (${r.warmupSeconds!.toFixed(1)} s): RSS ${gib(r.peakRss!)} GiB, heap ${gib(r.heapBytes)} GiB; `
      : 'no step finished; ';
    return `${head} cut short (${r.failed ?? 'timeout'}): ${after}${planned}${sampled}  [${chose}]`;
  }
  const fwd = r.forwardSeconds!;
  const bwd = Math.max(0, r.stepSeconds - r.optimizerSeconds! - fwd);
  return (
    `${head} ${r.tokensPerSecond!.toFixed(1).padStart(7)} tok/s  ${r.stepSeconds.toFixed(2).padStart(7)} s/step ` +
    `(fwd ${fwd.toFixed(2)} bwd ${bwd.toFixed(2)} opt ${r.optimizerSeconds!.toFixed(3)})  ` +
    `RSS ${gib(r.peakRss!)} GiB (plan ${gib(p.estimate.hostBytes)})  heap ${gib(r.heapBytes!)} GiB (plan ${gib(p.estimate.engineBytes)})  [${chose}]`
  );
}

/** Runs one point; samples the child's peak RSS (VmHWM) every 2 s, so a point killed by the timeout keeps it. */
function runChild(
  args: string[],
  timeoutMs: number,
): Promise<{ stdout: string; stderr: string; code: number | null; timedOut: boolean; hwm: number }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let hwm = 0;
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const sample = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) hwm = Math.max(hwm, Number(m[1]) * 1024);
      } catch {
        // not Linux, or the child just ended
      }
    }, 2000);
    const kill = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('exit', (code) => {
      clearInterval(sample);
      clearTimeout(kill);
      resolve({ stdout, stderr, code, timedOut, hwm });
    });
  });
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const steps = Number(arg('steps') ?? (quick ? 1 : 2));
  const memory = parseByteSize(arg('memory'), '--memory');
  const root = arg('models') ?? join(tmpdir(), 'chorus-scale-models');
  const shapes = (arg('shapes') ?? Object.keys(SHAPES).join(',')).split(',');
  const pointsArg = arg('points');
  const timeout = Number(arg('timeout') ?? 900) * 1000;
  // The children start the same engine: name it (and the BLAS behind its products) once here.
  await initEngine('wasm', { quiet: true });
  console.log(
    `scale bench ${new Date().toISOString()}: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ` +
      `${gib(totalmem())} GiB, engine ${describeBackend()}, LoRA r16 on q,v, BF16 random weights, ` +
      `${steps} timed step(s) per point`,
  );
  const results: PointResult[] = [];
  for (const name of shapes) {
    const s = SHAPES[name];
    if (!s) throw new Error(`--shapes: unknown shape ${name} (${Object.keys(SHAPES).join(', ')})`);
    const dir = await ensureModel(root, name, s);
    const points = pointsArg ? pointsArg.split(',') : (quick ? QUICK_POINTS : FULL_POINTS)[name];
    for (const p of points) {
      const [batch, seq] = p.split('x').map(Number);
      const args = ['--import', 'tsx', new URL(import.meta.url).pathname, '--child', name, '--dir', dir];
      args.push('--batch', String(batch), '--seq', String(seq), '--steps', String(steps));
      if (memory) args.push('--memory', String(memory));
      const run = await runChild(args, timeout);
      const line = run.stdout
        .split('\n')
        .filter((l) => l.startsWith('SCALE_RESULT '))
        .pop();
      const why = run.timedOut
        ? `no step finished within --timeout ${timeout / 1000} s`
        : run.stderr.trim().split('\n').slice(-2).join(' | ') || `exit ${run.code}`;
      const r: PointResult = line ? JSON.parse(line.slice('SCALE_RESULT '.length)) : { shape: name, batch, seq };
      if (run.timedOut || run.code !== 0) r.failed = (run.timedOut ? 'timeout' : why).slice(0, 300);
      // The kernel's high-water mark, sampled while it ran: a peak even for a point cut short.
      if (run.hwm > (r.peakRss ?? 0)) r.peakRssSampled = run.hwm;
      results.push(r);
      console.log(row(r));
    }
    const config = parseLlamaConfig(await readHfConfig(dir), dir);
    const stored = await storedWeightBytes(dir);
    const fits: string[] = [];
    for (const seq of [128, 512, 1024, 2048, 4096]) {
      let best = 0;
      for (let b = 1; b <= 256; b *= 2) {
        try {
          planFor(config, stored, b, seq, memory);
          best = b;
        } catch {
          break;
        }
      }
      fits.push(best ? `${best}×${seq}` : `none at seq ${seq}`);
    }
    console.log(`  ${name}: largest batch × seq the plan accepts (powers of two): ${fits.join(', ')}`);
  }
  console.log(`SCALE_SUMMARY ${JSON.stringify(results)}`);
}

if (arg('child')) {
  try {
    const r = await child();
    process.stdout.write(`SCALE_RESULT ${JSON.stringify(r)}\n`);
  } catch (err) {
    process.stdout.write(
      `SCALE_RESULT ${JSON.stringify({ shape: arg('child'), batch: Number(arg('batch')), seq: Number(arg('seq')), refused: errorMessage(err) })}\n`,
    );
  }
  process.exit(0);
} else {
  await main();
}
