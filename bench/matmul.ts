// Raw matmul throughput of each tensor engine that loads here. Usage:
//   npm run bench -- matmul [--sizes 512,1024] [--seconds 1]
// Exported for bench/train.ts:
//   measureMatmulGflops(backend, { sizes?, seconds? }) → Promise<Array<{ n, gflops }>>
// The transposeB and batched variants show why shared/tensor/ops.ts avoids them on wasm.
// Each figure is 2n³ flops per n×n·n×n product divided by the wall time of a timed loop that runs
// for at least `seconds`, after one warm-up product (wasm compiles and allocates on first use).
import { availableBackends, initEngine, tf, type BackendChoice } from '../shared/tensor/engine.ts';

export interface MatmulFigure {
  n: number;
  gflops: number;
}

/** plain: a·b; transposeB: a·bᵀ via the flag; batched: 8 stacked (n/√8)-sized products. */
export type MatmulVariant = 'plain' | 'transposeB' | 'batched';

export async function measureMatmulGflops(
  backend: BackendChoice,
  opts: { sizes?: number[]; seconds?: number; variant?: MatmulVariant } = {},
): Promise<MatmulFigure[]> {
  await initEngine(backend, { quiet: true });
  const sizes = opts.sizes ?? [512, 1024];
  const seconds = opts.seconds ?? 1;
  const out: MatmulFigure[] = [];
  const variant = opts.variant ?? 'plain';
  for (const size of sizes) {
    // The batched variant keeps the total flops of one n×n product: 8 products of m = n/2.
    const n = variant === 'batched' ? Math.round(size / 2) : size;
    const shape = variant === 'batched' ? [8, n, n] : [n, n];
    const a = tf.randomUniform(shape, -1, 1, 'float32', 1);
    const b = tf.randomUniform(shape, -1, 1, 'float32', 2);
    const once = () => {
      const c = tf.matMul(a, b, false, variant === 'transposeB');
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
    const products = variant === 'batched' ? 8 : 1;
    out.push({ n: size, gflops: (2 * n ** 3 * products * reps) / (elapsed / 1000) / 1e9 });
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
    for (const variant of ['plain', 'transposeB', 'batched'] as const) {
      for (const { n, gflops } of await measureMatmulGflops(backend, {
        sizes: use.length ? use : [256],
        seconds,
        variant,
      })) {
        console.log(
          `matmul ${backend.padEnd(10)} ${variant.padEnd(10)} n=${String(n).padStart(4)}  ${gflops.toFixed(2)} GFLOP/s`,
        );
      }
    }
  }
}
