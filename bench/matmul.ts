// Raw matmul throughput of each tensor engine that loads here. Usage:
//   npm run bench -- matmul [--sizes 512,1024] [--seconds 1]
// Exported for bench/train.ts:
//   measureMatmulGflops(backend, { sizes?, seconds? }) → Promise<Array<{ n, gflops }>>
// Each figure is 2n³ flops per n×n·n×n product divided by the wall time of a timed loop that runs
// for at least `seconds`, after one warm-up product (wasm compiles and allocates on first use).
import { availableBackends, initEngine, tf, type BackendChoice } from '../shared/tensor/engine.ts';

export interface MatmulFigure {
  n: number;
  gflops: number;
}

export async function measureMatmulGflops(
  backend: BackendChoice,
  opts: { sizes?: number[]; seconds?: number } = {},
): Promise<MatmulFigure[]> {
  await initEngine(backend, { quiet: true });
  const sizes = opts.sizes ?? [512, 1024];
  const seconds = opts.seconds ?? 1;
  const out: MatmulFigure[] = [];
  for (const n of sizes) {
    const a = tf.randomUniform([n, n], -1, 1, 'float32', 1);
    const b = tf.randomUniform([n, n], -1, 1, 'float32', 2);
    const once = () => {
      const c = tf.matMul(a, b);
      c.dataSync(); // forces execution (and the device→host copy a trainer also pays)
      c.dispose();
    };
    once();
    let reps = 0;
    const start = performance.now();
    let elapsed = 0;
    while (elapsed < seconds * 1000 || reps < 2) {
      once();
      reps++;
      elapsed = performance.now() - start;
    }
    out.push({ n, gflops: (2 * n ** 3 * reps) / (elapsed / 1000) / 1e9 });
    a.dispose();
    b.dispose();
  }
  return out;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = arg('sizes')?.split(',').map(Number) ?? [512, 1024];
  const seconds = Number(arg('seconds') ?? 1);
  const backends = await availableBackends();
  // The cpu backend is ~30× slower: keep it to the smaller sizes so the bench ends in seconds.
  for (const backend of backends) {
    const use = backend === 'cpu' ? sizes.filter((n) => n <= 512) : sizes;
    for (const { n, gflops } of await measureMatmulGflops(backend, { sizes: use.length ? use : [256], seconds })) {
      console.log(`matmul ${backend.padEnd(10)} n=${String(n).padStart(4)}  ${gflops.toFixed(2)} GFLOP/s`);
    }
  }
}
