// `npm run bench -- merge [--layers 2] [--adapters 8] [--rank 16] [--dim 4096] [--density 0.5]
//   [--ties-modules 4] [--deltas 5] [--threads N|auto] [--precision float32|float64] [--phases svd,ties,extract]`
// Time per module and peak RSS of merging K adapters of rank r over L layers × (q_proj, v_proj) of
// dim×dim with `svd` and with `ties`, and of extracting dim×dim deltas at rank r; each phase in its own
// child process, so that its peak RSS is its own. When /usr/bin/python3 has NumPy, the reference
// numpy_merge_bench.py (shared/reference, beside the repository) runs with the same sizes in the same
// run and the ratios are printed. It times one randomized SVD of one delta; bench/numpy_extract.py
// times the whole extraction of `deltas` deltas as a NumPy user writes it (ΔW = tuned − base, the same
// rsvd), and the medians of both parts are compared with ours. Each merge thread merges one module before the clock starts (NumPy's
// import is not timed either); that warm-up is printed separately.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoraAdapter, LoraModule } from '../shared/lora/types.ts';
import { closeMergeThreads, extractAdapter, mergeAdapters, type NamedTensor } from '../shared/merge/index.ts';
import { randomizedSvdEngine } from '../shared/merge/engine-linalg.ts';
import { describeBackend, initEngine, tf } from '../shared/tensor/engine.ts';
import { writeTensor } from '../shared/tensor/host.ts';
import { SplitMix32 } from '../shared/tensor/random.ts';
import { numpyInfo, peakRssMiB, runNumpy, sameBlasEnv } from './numpy.ts';

const args = process.argv.slice(2);
function opt(name: string, def: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : def;
}
const layers = Number(opt('layers', '2'));
const count = Number(opt('adapters', '8'));
const rank = Number(opt('rank', '16'));
const dim = Number(opt('dim', '4096'));
const density = Number(opt('density', '0.5'));
const tiesModules = Number(opt('ties-modules', '4'));
const threadsArg = opt('threads', String(availableParallelism()));
const threads = threadsArg === 'auto' ? 'auto' : Number(threadsArg);
const precision = opt('precision', 'float32') as 'float32' | 'float64';
const phase = opt('phase', '');
const deltas = Number(opt('deltas', '5'));

/** K adapters drawn like numpy_merge_bench.py's: A ~ U(−.015, .015), B ~ U(−.005, .005), scaling 2. */
function randomAdapter(seed: number, modules: number): LoraAdapter {
  const rng = new SplitMix32(seed);
  const out = new Map<string, LoraModule>();
  for (let i = 0; i < modules; i++) {
    const a = new Float32Array(rank * dim);
    const b = new Float32Array(dim * rank);
    for (let j = 0; j < a.length; j++) a[j] = (rng.uniform() - 0.5) * 0.03;
    for (let j = 0; j < b.length; j++) b[j] = (rng.uniform() - 0.5) * 0.01;
    const name = `model.layers.${i >> 1}.self_attn.${i % 2 ? 'v_proj' : 'q_proj'}`;
    out.set(name, { a, b, rank, inFeatures: dim, outFeatures: dim, scaling: 2 });
  }
  return {
    config: { r: rank, loraAlpha: 2 * rank, targetModules: ['q_proj', 'v_proj'], loraDropout: 0, useRslora: false },
    modules: out,
  };
}

/** tuned − base = a planted rank-2r delta with decaying σ plus small dense noise (a realistic tail). */
function extractionPair(index: number): { base: NamedTensor; tuned: NamedTensor } {
  const rng = new SplitMix32(99 + index);
  const lowRank = 2 * rank;
  const u = new Float32Array(dim * lowRank);
  const v = new Float32Array(lowRank * dim);
  for (let i = 0; i < u.length; i++) u[i] = rng.normal() / Math.sqrt(dim);
  for (let i = 0; i < v.length; i++) v[i] = (rng.normal() / Math.sqrt(dim)) * 0.9 ** Math.floor(i / dim);
  const planted = tf.tidy(() => tf.matMul(tf.tensor2d(u, [dim, lowRank]), tf.tensor2d(v, [lowRank, dim])));
  const tuned = planted.dataSync() as Float32Array;
  planted.dispose();
  const base = new Float32Array(dim * dim);
  for (let i = 0; i < base.length; i++) {
    base[i] = (rng.uniform() - 0.5) * 0.05;
    tuned[i] += base[i] + (rng.uniform() - 0.5) * 1e-4;
  }
  return { base: { shape: [dim, dim], data: base }, tuned: { shape: [dim, dim], data: tuned } };
}

async function runPhase(name: string): Promise<void> {
  const t0 = performance.now();
  let modules = 0;
  let energy = 0;
  const onModule = (r: { energyKept: number }) => {
    modules++;
    energy += r.energyKept;
  };
  let run: () => Promise<unknown>;
  let warmUp: () => Promise<unknown> = async () => {};
  let cold: number | undefined;
  // The extractions alone, not their inputs: secs is the median × count, so that secs / modules is the median.
  let extracted: { secs: number; cpuSecs: number; rsvd: number } | undefined;
  await initEngine(undefined, { quiet: true });
  if (name === 'extract') {
    // Deltas one at a time, in this thread (as NumPy extracts them): the first extraction pays the
    // first touch of its buffers and the engine's heap growth; the figure is the median of the next
    // `deltas`, each on another delta of the same size. Each delta's randomized SVD is then timed
    // alone on the same ΔW, the part that numpy_merge_bench.py times.
    const key = 'model.layers.0.self_attn.q_proj.weight';
    const once = async (i: number) => {
      let pair: ReturnType<typeof extractionPair> | null = extractionPair(i);
      const base = new Map([[key, pair.base]]);
      const tuned = new Map([[key, pair.tuned]]);
      const c0 = process.cpuUsage();
      const start = performance.now();
      await extractAdapter(base, tuned, { rank, threads: 1, precision, onModule });
      const c = process.cpuUsage(c0);
      const secs = (performance.now() - start) / 1000;
      const { base: b, tuned: t } = pair;
      pair = null;
      const delta = writeTensor([dim, dim], (out) => {
        for (let j = 0; j < out.length; j++) out[j] = t.data[j] - b.data[j];
      }).tensor as tf.Tensor2D;
      const r0 = performance.now();
      randomizedSvdEngine(delta, rank, { seed: i });
      const rsvd = (performance.now() - r0) / 1000;
      delta.dispose();
      return { secs, cpuSecs: (c.user + c.system) / 1e6, rsvd };
    };
    cold = (await once(0)).secs;
    modules = 0;
    energy = 0;
    run = async () => {
      const runs = [];
      for (let i = 1; i <= deltas; i++) runs.push(await once(i));
      const median = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1];
      extracted = {
        secs: median(runs.map((x) => x.secs)) * runs.length,
        cpuSecs: runs.reduce((acc, x) => acc + x.cpuSecs, 0),
        rsvd: median(runs.map((x) => x.rsvd)),
      };
    };
  } else {
    const adapters = Array.from({ length: count }, (_, k) =>
      randomAdapter(k + 1, name === 'ties' ? tiesModules : 2 * layers),
    );
    const method = name as 'svd' | 'ties';
    const merge = (ads: LoraAdapter[], report?: typeof onModule) =>
      mergeAdapters(ads, {
        method,
        density: method === 'ties' ? density : undefined,
        rank,
        threads,
        precision,
        onModule: report,
      });
    run = () => merge(adapters, onModule);
    // One module per thread first: threads started, engines loaded, JIT and buffers warm, as in the
    // long run of a whole model (NumPy's import is not timed either).
    const lanes = threads === 'auto' ? availableParallelism() : threads;
    warmUp = () => merge(Array.from({ length: count }, (_, k) => randomAdapter(100 + k, lanes)));
  }
  const setup = (performance.now() - t0) / 1000;
  const w0 = performance.now();
  await warmUp();
  const warm = (performance.now() - w0) / 1000;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  await run();
  const secs = extracted?.secs ?? (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await closeMergeThreads();
  const cpuSecs = extracted?.cpuSecs ?? (cpu.user + cpu.system) / 1e6;
  console.log(
    JSON.stringify({
      phase: name,
      secs,
      cpuSecs,
      modules,
      perModule: secs / modules,
      energy: energy / modules,
      setup,
      warm,
      cold,
      rsvd: extracted?.rsvd,
      blas: describeBackend(),
      maxRssMiB: peakRssMiB(),
    }),
  );
}

/** numpy_merge_bench.py in shared/reference beside the repository (or beside one of its parents). */
function findReference(): string | null {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const path = join(dir, 'shared', 'reference', 'numpy_merge_bench.py');
    if (existsSync(path)) return path;
  }
  return null;
}

interface NumpyFigures {
  svd: number;
  ties: number;
  extract: number;
  rss: number;
}

function numpyFigures(script: string): NumpyFigures {
  const out = runNumpy(script, [
    ...['--layers', String(layers), '--adapters', String(count), '--rank', String(rank), '--dim', String(dim)],
    ...['--density', String(density), '--ties-modules', String(tiesModules)],
  ]);
  const m = /svd ([\d.]+) ms\/module, ties ([\d.]+) s\/module, extract ([\d.]+) s, peak RSS ([\d.]+) MiB/.exec(out);
  if (!m) throw new Error(`unexpected output from ${script}: ${out}`);
  return { svd: Number(m[1]) / 1000, ties: Number(m[2]), extract: Number(m[3]), rss: Number(m[4]) };
}

async function main(): Promise<void> {
  if (phase) return runPhase(phase);
  const phases = opt('phases', 'svd,ties,extract').split(',');
  console.log(
    `merge bench: ${count} adapters, rank ${rank}, ${dim}×${dim}; svd over ${2 * layers} modules, ties (density ${density}) over ${tiesModules}, ` +
      `extract of ${deltas} deltas at rank ${rank}, one at a time in this thread (median); ${precision}, threads ${threads}, ${new Date().toISOString().slice(0, 10)}`,
  );
  const self = fileURLToPath(import.meta.url);
  const ours = new Map<
    string,
    { perModule: number; maxRssMiB: number; energy: number; modules: number; warm: number; rsvd?: number }
  >();
  for (const p of phases) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, ...args, '--phase', p], {
      env: sameBlasEnv(),
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    });
    if (r.status !== 0) {
      console.log(`${p}: failed (${r.status}) ${r.stderr.slice(-2000)}`);
      continue;
    }
    const x = JSON.parse(r.stdout.trim().split('\n').pop()!);
    if (ours.size === 0) console.log(`chorus engine: ${x.blas}`);
    ours.set(p, x);
    console.log(
      `chorus ${p}: ${x.modules} module(s), ${fmt(x.perModule)}/module (CPU ${fmt(x.cpuSecs / x.modules)}/module), ` +
        `energy kept ${(100 * x.energy).toFixed(2)}%, ` +
        `peak RSS ${x.maxRssMiB.toFixed(0)} MiB (inputs built in ${x.setup.toFixed(1)} s` +
        (x.cold === undefined
          ? `; threads warmed on one module each in ${x.warm.toFixed(1)} s)`
          : `; the first, cold extraction took ${fmt(x.cold)})`),
    );
  }
  const info = numpyInfo();
  const script = findReference();
  if (!info || !script) {
    console.log(
      info
        ? 'numpy_merge_bench.py not found beside the repository: no side-by-side figures'
        : 'no NumPy in /usr/bin/python3: no side-by-side figures',
    );
    return;
  }
  const np = numpyFigures(script);
  console.log(`${info}; peak RSS of the whole NumPy run ${np.rss.toFixed(0)} MiB`);
  console.log('\n| work | Chorus | peak RSS | NumPy | NumPy peak RSS | NumPy time / Chorus time |');
  console.log('|---|---|---|---|---|---|');
  for (const p of phases) {
    const x = ours.get(p);
    if (!x) continue;
    const theirs = np[p as keyof NumpyFigures];
    const unit = p === 'extract' ? 'delta' : 'module';
    console.log(
      `| ${p} | ${fmt(x.perModule)}/${unit} | ${x.maxRssMiB.toFixed(0)} MiB | ${fmt(theirs)}/${unit} | ${np.rss.toFixed(0)} MiB | ${(theirs / x.perModule).toFixed(2)} |`,
    );
  }
  const ex = ours.get('extract');
  if (ex?.rsvd !== undefined) {
    const yard = fileURLToPath(new URL('./numpy_extract.py', import.meta.url));
    const npx = JSON.parse(
      runNumpy(yard, ['--dim', String(dim), '--rank', String(rank), '--deltas', String(deltas)]).trim(),
    ) as { extract: number; rsvd: number; rss: number };
    console.log(
      `\nExtraction like for like (bench/numpy_extract.py: ΔW = tuned − base, then the reference's rsvd; ` +
        `median of ${deltas} deltas after a first; NumPy peak RSS ${npx.rss.toFixed(0)} MiB):\n`,
    );
    console.log('| part | Chorus | NumPy | NumPy time / Chorus time |');
    console.log('|---|---|---|---|');
    console.log(
      `| whole extraction (ΔW, rsvd, factors) | ${fmt(ex.perModule)} | ${fmt(npx.extract)} | ${(npx.extract / ex.perModule).toFixed(2)} |`,
    );
    console.log(`| randomized SVD alone | ${fmt(ex.rsvd)} | ${fmt(npx.rsvd)} | ${(npx.rsvd / ex.rsvd).toFixed(2)} |`);
  }
}

function fmt(secs: number): string {
  return secs < 1 ? `${(secs * 1000).toFixed(0)} ms` : `${secs.toFixed(2)} s`;
}

await main();
