// `npm run bench -- rounds [--replicas 2,4] [--methods mean,cat_svd] [--layers 32] [--rank 16] [--dim 4096]
//   [--threads auto|N] [--precision float32|float64]`
// The coordinator's work in a data-parallel weight round: R replicas of a rank-r adapter on L layers ×
// (q_proj, v_proj) of dim×dim come in as object-store bytes, are reconciled (`mean`, or its alias
// `cat_svd`) and go back out as bytes, as coordinator/merge-task.ts does. Each configuration runs in
// its own child process (its own peak RSS); the replicas are one adapter drifted by 1 % per replica, so
// no module takes the shared-A shortcut. When /usr/bin/python3 has NumPy, bench/numpy_round.py runs the
// same re-factorisation with the same sizes in the same run and the ratio is printed.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { adapterFromObjectBytes, adapterToObjectBytes } from '../shared/formats/peft.ts';
import type { LoraAdapter, LoraModule } from '../shared/lora/types.ts';
import { closeMergeThreads, reconcileReplicas, type ReconcileMethod } from '../shared/merge/index.ts';
import { initEngine } from '../shared/tensor/engine.ts';
import { SplitMix32 } from '../shared/tensor/random.ts';
import { numpyInfo, peakRssMiB, runNumpy, sameBlasEnv } from './numpy.ts';

const args = process.argv.slice(2);
function opt(name: string, def: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : def;
}
const layers = Number(opt('layers', '32'));
const rank = Number(opt('rank', '16'));
const dim = Number(opt('dim', '4096'));
const threadsArg = opt('threads', 'auto');
const threads = threadsArg === 'auto' ? 'auto' : Number(threadsArg);
const precision = opt('precision', 'float32') as 'float32' | 'float64';

function replicasOf(count: number): LoraAdapter[] {
  const rng = new SplitMix32(7);
  const base: { a: Float32Array; b: Float32Array }[] = [];
  for (let i = 0; i < 2 * layers; i++) {
    base.push({
      a: Float32Array.from({ length: rank * dim }, () => (rng.uniform() - 0.5) * 0.03),
      b: Float32Array.from({ length: dim * rank }, () => (rng.uniform() - 0.5) * 0.01),
    });
  }
  return Array.from({ length: count }, () => {
    const modules = new Map<string, LoraModule>();
    base.forEach(({ a, b }, i) => {
      const name = `model.layers.${i >> 1}.self_attn.${i % 2 ? 'v_proj' : 'q_proj'}`;
      modules.set(name, {
        a: Float32Array.from(a, (x) => x * (1 + 0.01 * rng.normal())),
        b: Float32Array.from(b, (x) => x * (1 + 0.01 * rng.normal())),
        rank,
        inFeatures: dim,
        outFeatures: dim,
        scaling: 2,
      });
    });
    return {
      config: { r: rank, loraAlpha: 2 * rank, targetModules: ['q_proj', 'v_proj'], loraDropout: 0, useRslora: false },
      modules,
    };
  });
}

async function runOne(count: number, method: ReconcileMethod): Promise<void> {
  const bytes = replicasOf(count).map(adapterToObjectBytes);
  await initEngine(undefined, { quiet: true });
  const labels = bytes.map((_, i) => `replica ${i}`);
  // Start the threads and their engines on a first round (a coordinator keeps them between rounds).
  const warm0 = performance.now();
  await reconcileReplicas(
    bytes.map((b, i) => adapterFromObjectBytes(b, labels[i])),
    { method, threads, precision },
  );
  const warm = (performance.now() - warm0) / 1000;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const replicas = bytes.map((b, i) => adapterFromObjectBytes(b, labels[i]));
  const t1 = performance.now();
  const result = await reconcileReplicas(replicas, { method, labels, threads, precision });
  const t2 = performance.now();
  const out = adapterToObjectBytes(result.adapter);
  const t3 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  await closeMergeThreads();
  console.log(
    JSON.stringify({
      replicas: count,
      method,
      round: (t3 - t0) / 1000,
      reconcile: (t2 - t1) / 1000,
      bytes: (t1 - t0 + t3 - t2) / 1000,
      cpuSecs: (cpu.user + cpu.system) / 1e6,
      warm,
      outMiB: out.byteLength / 2 ** 20,
      maxRssMiB: peakRssMiB(),
    }),
  );
}

async function main(): Promise<void> {
  const one = opt('one', '');
  if (one) {
    const [count, method] = one.split(':');
    return runOne(Number(count), method as ReconcileMethod);
  }
  const counts = opt('replicas', '2,4').split(',').map(Number);
  const methods = opt('methods', 'mean,cat_svd').split(',');
  console.log(
    `rounds bench: rank ${rank}, ${layers} layers × (q_proj, v_proj) of ${dim}×${dim}; ${precision}, threads ${threads}, ` +
      new Date().toISOString().slice(0, 10),
  );
  const info = numpyInfo();
  const self = fileURLToPath(import.meta.url);
  const rows: string[] = [];
  for (const count of counts) {
    let numpy: { secs: number; rss: number } | null = null;
    if (info) {
      const script = fileURLToPath(new URL('./numpy_round.py', import.meta.url));
      const text = runNumpy(script, [
        '--replicas',
        String(count),
        '--layers',
        String(layers),
        '--rank',
        String(rank),
        '--dim',
        String(dim),
      ]);
      const m = /round ([\d.]+) s .*peak RSS ([\d.]+) MiB/.exec(text);
      if (m) numpy = { secs: Number(m[1]), rss: Number(m[2]) };
    }
    for (const method of methods) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', self, ...args, '--one', `${count}:${method}`], {
        env: sameBlasEnv(),
        encoding: 'utf8',
        maxBuffer: 1 << 24,
      });
      if (r.status !== 0) {
        console.log(`${count} replicas, ${method}: failed (${r.status}) ${r.stderr.slice(-2000)}`);
        continue;
      }
      const x = JSON.parse(r.stdout.trim().split('\n').pop()!);
      console.log(
        `chorus ${count} replicas ${method}: round ${x.round.toFixed(2)} s (reconcile ${x.reconcile.toFixed(2)} s, ` +
          `bytes in and out ${x.bytes.toFixed(2)} s, process CPU ${x.cpuSecs.toFixed(2)} s), peak RSS ${x.maxRssMiB.toFixed(0)} MiB, ` +
          `first round with thread start ${x.warm.toFixed(1)} s`,
      );
      const ratio = numpy ? (numpy.secs / x.reconcile).toFixed(2) : '—';
      const np = numpy ? `${numpy.secs.toFixed(2)} s | ${numpy.rss.toFixed(0)} MiB` : '— | —';
      rows.push(
        `| ${count} | ${method} | ${x.reconcile.toFixed(2)} s | ${x.round.toFixed(2)} s | ${x.maxRssMiB.toFixed(0)} MiB | ${np} | ${ratio} |`,
      );
    }
  }
  console.log(info ?? 'no NumPy in /usr/bin/python3: no side-by-side figures');
  console.log(
    '\n| replicas | method | Chorus re-factorisation | Chorus round with bytes | peak RSS | NumPy re-factorisation | NumPy peak RSS | NumPy time / Chorus time |',
  );
  console.log('|---|---|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
}

await main();
