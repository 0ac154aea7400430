// `npm run bench -- merge [--layers 32] [--adapters 8] [--rank 16] [--dim 4096] [--phases svd,ties,extract]`
// Time and peak memory to merge K adapters of rank r over L layers × (q_proj, v_proj) of dim×dim
// with `svd` and with `ties`, and to extract one dim×dim delta at rank r. Each phase runs in its own
// child process so that its peak RSS (getrusage maxrss) is its own. Pure JS on the CPU: scale the
// layers down on small machines and extrapolate per module (the work is linear in the module count).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { LoraAdapter, LoraModule } from '../shared/lora/types.ts';
import { extractAdapter, mergeAdapters, type NamedTensor } from '../shared/merge/index.ts';
import { SplitMix32 } from '../shared/tensor/random.ts';

const args = process.argv.slice(2);
function opt(name: string, def: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : def;
}
const layers = Number(opt('layers', '32'));
const count = Number(opt('adapters', '8'));
const rank = Number(opt('rank', '16'));
const dim = Number(opt('dim', '4096'));
const phase = opt('phase', '');

function randomAdapter(seed: number): LoraAdapter {
  const rng = new SplitMix32(seed);
  const modules = new Map<string, LoraModule>();
  for (let l = 0; l < layers; l++) {
    for (const proj of ['q_proj', 'v_proj']) {
      const a = new Float32Array(rank * dim);
      const b = new Float32Array(dim * rank);
      for (let i = 0; i < a.length; i++) a[i] = (rng.uniform() - 0.5) * 0.03;
      for (let i = 0; i < b.length; i++) b[i] = (rng.uniform() - 0.5) * 0.01;
      modules.set(`model.layers.${l}.self_attn.${proj}`, { a, b, rank, inFeatures: dim, outFeatures: dim, scaling: 2 });
    }
  }
  return {
    config: { r: rank, loraAlpha: 2 * rank, targetModules: ['q_proj', 'v_proj'], loraDropout: 0, useRslora: false },
    modules,
  };
}

function runPhase(name: string): void {
  const t0 = performance.now();
  let modules = 0;
  let energy = 0;
  if (name === 'extract') {
    // W_tuned − W_base = a rank-r·2 planted delta plus small dense noise (a realistic spectrum tail).
    const rng = new SplitMix32(99);
    const base = new Float32Array(dim * dim);
    const tuned = new Float32Array(dim * dim);
    for (let i = 0; i < base.length; i++) base[i] = (rng.uniform() - 0.5) * 0.05;
    const lowRank = 2 * rank;
    const u = Float32Array.from({ length: dim * lowRank }, () => rng.normal() / Math.sqrt(dim));
    const v = Float32Array.from({ length: lowRank * dim }, () => rng.normal() / Math.sqrt(dim));
    for (let i = 0; i < dim; i++) {
      for (let j = 0; j < dim; j++) {
        let acc = 0;
        for (let p = 0; p < lowRank; p++) acc += u[i * lowRank + p] * v[p * dim + j] * 0.9 ** p;
        tuned[i * dim + j] = base[i * dim + j] + acc + (rng.uniform() - 0.5) * 1e-4;
      }
    }
    const name0 = 'model.layers.0.self_attn.q_proj.weight';
    const b = new Map<string, NamedTensor>([[name0, { shape: [dim, dim], data: base }]]);
    const t = new Map<string, NamedTensor>([[name0, { shape: [dim, dim], data: tuned }]]);
    const start = performance.now();
    const res = extractAdapter(b, t, { rank });
    const secs = (performance.now() - start) / 1000;
    report(name, secs, 1, res.modules[0].energyKept, (start - t0) / 1000);
    return;
  }
  const adapters = Array.from({ length: count }, (_, k) => randomAdapter(k + 1));
  const start = performance.now();
  const res = mergeAdapters(adapters, {
    method: name as 'svd' | 'ties',
    density: name === 'ties' ? 0.5 : undefined,
    rank,
    onModule: (r) => {
      modules++;
      energy += r.energyKept;
    },
  });
  const secs = (performance.now() - start) / 1000;
  report(name, secs, modules, energy / modules, (start - t0) / 1000, res.adapter.modules.size);
}

function report(
  name: string,
  secs: number,
  modules: number,
  energy: number,
  setup: number,
  outModules = modules,
): void {
  const maxRssMiB = process.resourceUsage().maxRSS / 1024;
  // CPU time of the whole process (setup included): on a shared machine wall time also counts waiting.
  const cpuSecs = process.cpuUsage().user / 1e6;
  console.log(
    JSON.stringify({
      phase: name,
      secs,
      cpuSecs,
      modules,
      outModules,
      perModule: secs / modules,
      energy,
      setup,
      maxRssMiB,
    }),
  );
}

if (phase) {
  runPhase(phase);
} else {
  const phases = opt('phases', 'svd,ties,extract').split(',');
  console.log(`merge bench: ${count} adapters, rank ${rank}, ${layers} layers × (q_proj, v_proj), ${dim}×${dim}`);
  const self = fileURLToPath(import.meta.url);
  for (const p of phases) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, ...args, '--phase', p], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    });
    if (r.status !== 0) {
      console.log(`${p}: failed (${r.status}) ${r.stderr.slice(-2000)}`);
      continue;
    }
    const line = r.stdout.trim().split('\n').pop()!;
    const x = JSON.parse(line);
    const full = (x.perModule * 64).toFixed(0);
    console.log(
      p === 'extract'
        ? `extract: one ${dim}×${dim} delta at rank ${rank}: ${x.secs.toFixed(2)} s (process CPU ${x.cpuSecs.toFixed(1)} s incl. building the matrices), energy kept ${(100 * x.energy).toFixed(2)}%, peak RSS ${x.maxRssMiB.toFixed(0)} MiB`
        : `${p}: ${x.modules} modules in ${x.secs.toFixed(2)} s wall, ${x.cpuSecs.toFixed(2)} s process CPU ` +
            `(${x.perModule.toFixed(2)} s/module wall, ${(x.cpuSecs / x.modules).toFixed(2)} s/module CPU; ` +
            `×64 modules ≈ ${full} s wall, ${((x.cpuSecs / x.modules) * 64).toFixed(0)} s CPU), ` +
            `mean energy kept ${(100 * x.energy).toFixed(2)}%, peak RSS ${x.maxRssMiB.toFixed(0)} MiB (inputs built in ${x.setup.toFixed(1)} s)`,
    );
  }
}
