// Matrix products shaped for speed on every backend, with hand-written gradients. Public API:
//   linearT(x [N,in], wT [in,out]) → x·wT            frozen weight: gradient for x only
//   linearRows(x [N,in], w [out,in]) → x·wᵀ          frozen weight in HF layout (the LM head): gradient for x only
//   rowsProduct(x [N,in], w [out,in]) → x·wᵀ         the same product, not differentiable
//   bmm(a, b, transposeB?) → a·b or a·bᵀ             batched, gradients for both (wasm: per-matrix 2-D products)
//   batchMatMul(a, b, transposeA?, transposeB?)      the same products, not differentiable (inside custom gradients)
//   loraDelta(x [N,in], a [r,in], b [out,r], scale) → scale·(x·aᵀ)·bᵀ   gradients for x, a, b
//   matMul2d(a [M,K], b [K,N]) → a·b                 gradients for both (a weight that trains)
//   oneHotEmbed(ids int32 [N], table [V,H]) → rows   gradient for the table (wasm has no gather grad)
// Why: the wasm backend's own BatchMatMul is fast (XNNPACK, ~10–25 GFLOP/s here) only for one
// untransposed 2-D product; any transpose flag or batch dimension falls back to a loop nest
// ~10–40× slower. tfjs's stock MatMul gradient uses transpose flags, so every backward product
// would hit the slow path. There (productsTakeFlags() false) these ops transpose small or cheap
// operands explicitly and keep each big product in the fast form. With native GEMM (BLAS takes
// transpose flags and batches at no cost) and on tensorflow they pass the flags instead, and copy
// nothing. Either way they compute exactly the same mathematics as tf.matMul.
import { productsTakeFlags, tf } from './engine.ts';

// tfjs types custom-gradient functions as variadic; ours take fixed tensor arguments.
type CustomGradFn = Parameters<typeof tf.customGrad>[0];

function swapLast2(t: tf.Tensor): tf.Tensor {
  const perm = t.shape.map((_, i) => i);
  const r = perm.length;
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return tf.transpose(t, perm);
}

/**
 * x·wT with wT a constant [in, out] (the transpose of an HF Linear weight). The input gradient
 * dy·wTᵀ is formed without a per-step transposed copy of the weight when that is cheaper: as
 * (wT·dyᵀ)ᵀ, transposing the activation-sized dy and result instead. On wasm a fresh weight-side
 * operand also costs XNNPACK a repacking, while wT's packing is cached with the tensor; at 128 rows
 * of a 576×1536 layer this takes the product from 43 to 29 ms (the forward is 27 ms).
 */
export function linearT(x: tf.Tensor2D, wT: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad(((xx: tf.Tensor, save: tf.GradSaveFunc) => {
    save([]);
    return {
      value: tf.matMul(xx as tf.Tensor2D, wT),
      gradFunc: (dy: tf.Tensor) =>
        tf.tidy(() => {
          if (productsTakeFlags()) return tf.matMul(dy as tf.Tensor2D, wT, false, true);
          const [K, N] = wT.shape;
          const rows = dy.shape[0]!;
          if (rows * (K + N) <= K * N) return tf.transpose(tf.matMul(wT, tf.transpose(dy as tf.Tensor2D)));
          return tf.matMul(dy as tf.Tensor2D, tf.transpose(wT));
        }),
    };
  }) as unknown as CustomGradFn);
  return f(x) as tf.Tensor2D;
}

/**
 * x·wᵀ with w a constant [out, in] in HF's layout, computed as (w·xᵀ)ᵀ: w is the product's row operand,
 * so nothing weight-sized is transposed or packed per call. For the LM head (out = vocabulary) this is
 * also the fast form on wasm: 256 rows × 576 × 49152 took 2.7 s against 7.0 s for x·wT with a cached
 * transposed copy (loaded 2-core machine), and a tied model keeps no transposed copy of its embedding.
 * The input gradient dy·w takes w as it is.
 */
export function linearRows(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad(((xx: tf.Tensor, save: tf.GradSaveFunc) => {
    save([]);
    return {
      value: rowsProduct(xx as tf.Tensor2D, w),
      gradFunc: (dy: tf.Tensor) => tf.matMul(dy as tf.Tensor2D, w),
    };
  }) as unknown as CustomGradFn);
  return f(x) as tf.Tensor2D;
}

/** x·wᵀ for x [N, in] and w [out, in] (HF's layout), not differentiable: linearRows's value. */
export function rowsProduct(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  if (productsTakeFlags()) return tf.matMul(x, w, false, true);
  return tf.tidy(() => tf.transpose(tf.matMul(w, tf.transpose(x))) as tf.Tensor2D);
}

/**
 * The G matrices [M, K] of t [..., M, K] as separate tensors, copied through host memory. On wasm a
 * slice, unstack or split costs ~0.4–0.6 ms per piece while one read-back plus G uploads costs
 * ~0.02 ms per piece. Not differentiable: for values inside a custom gradient only.
 */
function matricesOf(t: tf.Tensor): tf.Tensor2D[] {
  const [M, K] = t.shape.slice(-2);
  const n = M * K;
  const data = t.dataSync() as Float32Array;
  return Array.from({ length: data.length / n }, (_, g) => tf.tensor2d(data.subarray(g * n, (g + 1) * n), [M, K]));
}

/**
 * a·b as one plain 2-D product per batch entry, stacked. On wasm that is ~4× faster than one
 * BatchMatMul, whose batch > 1 path is a slow loop nest (the 2-D products take XNNPACK's path).
 */
function matMulPerMatrix(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const as = matricesOf(a);
  const bs = matricesOf(b);
  const out = tf.stack(as.map((ai, g) => tf.matMul(ai, bs[g])));
  return tf.reshape(out, [...a.shape.slice(0, -1), b.shape[b.rank - 1]]);
}

/**
 * Batched op(a)·op(b) (rank ≥ 3, equal batch dims), op = transpose of the last two axes where its flag
 * is set, in the backend's fastest form; no gradient of its own.
 */
export function batchMatMul(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  if (productsTakeFlags()) return tf.matMul(a, b, transposeA, transposeB);
  return tf.tidy(() => matMulPerMatrix(transposeA ? swapLast2(a) : a, transposeB ? swapLast2(b) : b));
}

/** Batched a·b, or a·bᵀ with transposeB (rank ≥ 3, equal batch dims), with gradients for both. */
export function bmm(a: tf.Tensor, b: tf.Tensor, transposeB = false): tf.Tensor {
  const mm = batchMatMul;
  const f = tf.customGrad(((aa: tf.Tensor, bb: tf.Tensor, save: tf.GradSaveFunc) => {
    save([aa, bb]);
    return {
      value: mm(aa, bb, false, transposeB),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sb] = saved;
        // c = a·bᵀ: da = dy·b, db = dyᵀ·a; c = a·b: da = dy·bᵀ, db = aᵀ·dy.
        return [mm(dy, sb, false, !transposeB), transposeB ? mm(dy, sa, true, false) : mm(sa, dy, true, false)];
      },
    };
  }) as unknown as CustomGradFn);
  return f(a, b);
}

/** op(a)·op(b) for 2-D operands: flags where they are free, explicit transposes where they are not. */
function product(a: tf.Tensor2D, b: tf.Tensor2D, transposeA: boolean, transposeB: boolean): tf.Tensor2D {
  if (productsTakeFlags()) return tf.matMul(a, b, transposeA, transposeB);
  return tf.matMul(transposeA ? tf.transpose(a) : a, transposeB ? tf.transpose(b) : b);
}

/** scale·(x·aᵀ)·bᵀ, PEFT's LoRA path with A [r,in] and B [out,r] as stored. */
export function loraDelta(x: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D, scale: number): tf.Tensor2D {
  const f = tf.customGrad(((xx: tf.Tensor, aa: tf.Tensor, bb: tf.Tensor, save: tf.GradSaveFunc) => {
    const low = product(xx as tf.Tensor2D, aa as tf.Tensor2D, false, true); // [N, r]
    save([xx, aa, bb, low]);
    const out = product(low, bb as tf.Tensor2D, false, true); // [N, out]
    return {
      value: scale === 1 ? out : tf.mul(out, scale),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sa, sb, sLow] = saved as tf.Tensor2D[];
        const dys = (scale === 1 ? dy : tf.mul(dy, scale)) as tf.Tensor2D; // [N, out]
        const dLow: tf.Tensor2D = tf.matMul(dys, sb); // [N, r]
        const dA = product(dLow, sx, true, false); // [r, in]
        const dB = productsTakeFlags()
          ? tf.matMul(dys, sLow, true, false) // [out, r]
          : tf.transpose(tf.matMul(tf.transpose(sLow), dys)); // ([r,N]·[N,out])ᵀ = [out, r]
        const dx = tf.matMul(dLow, sa); // [N, in]
        return [dx, dA, dB];
      },
    };
  }) as unknown as CustomGradFn);
  return f(x, a, b) as tf.Tensor2D;
}

/** a·b for 2-D a [M,K] and b [K,N], gradients for both (a base weight that itself trains). */
export function matMul2d(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad(((aa: tf.Tensor, bb: tf.Tensor, save: tf.GradSaveFunc) => {
    save([aa, bb]);
    return {
      value: tf.matMul(aa as tf.Tensor2D, bb as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sb] = saved as tf.Tensor2D[];
        const g = dy as tf.Tensor2D;
        return [product(g, sb, false, true), product(sa, g, true, false)];
      },
    };
  }) as unknown as CustomGradFn);
  return f(a, b) as tf.Tensor2D;
}

/**
 * table[ids] as a one-hot product, [N, H], with a gradient for the table (oneHotᵀ·dy). The wasm
 * backend has no kernel for gather's gradient (a scatter-add); a frozen table should use tf.gather,
 * which is cheaper.
 */
export function oneHotEmbed(ids: tf.Tensor1D, table: tf.Tensor2D): tf.Tensor2D {
  // (cast, not oneHot's dtype argument: the wasm kernel ignores it and fills int32 bits)
  const oneHot = tf.cast(tf.oneHot(ids, table.shape[0]), 'float32') as tf.Tensor2D; // [N, V]
  const f = tf.customGrad(((tt: tf.Tensor, save: tf.GradSaveFunc) => {
    // Saved (kept past the caller's tidy) for the backward pass, which may run after it.
    save([oneHot]);
    return {
      value: tf.matMul(oneHot, tt as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => product(saved[0] as tf.Tensor2D, dy as tf.Tensor2D, true, false),
    };
  }) as unknown as CustomGradFn);
  return f(table) as tf.Tensor2D;
}
