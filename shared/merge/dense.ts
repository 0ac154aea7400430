// Dense float64 matrices for the merge code: Mat { rows, cols, data } row-major (data[i * cols + j]),
// transpose and products, including the two thin products of the randomized SVD (linalg.ts), and
// the squared Frobenius norm. Plain loops over Float64Array.

export interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

export function mat(rows: number, cols: number, data?: Float64Array): Mat {
  const d = data ?? new Float64Array(rows * cols);
  if (d.length !== rows * cols) throw new Error(`matrix data has ${d.length} entries, expected ${rows}×${cols}`);
  return { rows, cols, data: d };
}

export function transpose(a: Mat): Mat {
  const out = new Float64Array(a.rows * a.cols);
  for (let i = 0; i < a.rows; i++) {
    const row = i * a.cols;
    for (let j = 0; j < a.cols; j++) out[j * a.rows + i] = a.data[row + j];
  }
  return mat(a.cols, a.rows, out);
}

/** C = A·B (i-k-j order so the inner loop is a contiguous axpy). */
export function matmul(a: Mat, b: Mat): Mat {
  if (a.cols !== b.rows) throw new Error(`matmul: ${a.rows}×${a.cols} by ${b.rows}×${b.cols}`);
  const n = b.cols;
  const out = new Float64Array(a.rows * n);
  for (let i = 0; i < a.rows; i++) {
    const crow = i * n;
    for (let p = 0; p < a.cols; p++) {
      const v = a.data[i * a.cols + p];
      if (v === 0) continue;
      const brow = p * n;
      for (let j = 0; j < n; j++) out[crow + j] += v * b.data[brow + j];
    }
  }
  return mat(a.rows, n, out);
}

/** Y = A·X where X (n×l) is given transposed as Xt (l×n); returns Yt (l×m). Four dot products per
 *  sweep of a row of A, so each A entry is loaded once for four columns. */
export function mulByThinT(a: Mat, xt: Float64Array, l: number): Float64Array {
  const { rows: m, cols: n, data } = a;
  const yt = new Float64Array(l * m);
  for (let i = 0; i < m; i++) {
    const ar = i * n;
    let c = 0;
    for (; c + 4 <= l; c += 4) {
      const x0 = c * n;
      const x1 = x0 + n;
      const x2 = x1 + n;
      const x3 = x2 + n;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let j = 0; j < n; j++) {
        const v = data[ar + j];
        s0 += v * xt[x0 + j];
        s1 += v * xt[x1 + j];
        s2 += v * xt[x2 + j];
        s3 += v * xt[x3 + j];
      }
      yt[c * m + i] = s0;
      yt[(c + 1) * m + i] = s1;
      yt[(c + 2) * m + i] = s2;
      yt[(c + 3) * m + i] = s3;
    }
    for (; c < l; c++) {
      const xr = c * n;
      let acc = 0;
      for (let j = 0; j < n; j++) acc += data[ar + j] * xt[xr + j];
      yt[c * m + i] = acc;
    }
  }
  return yt;
}

/** Z = Qᵀ·A where Q (m×l) is given transposed as Qt (l×m); returns Z (l×n) row-major. Four rows of
 *  A per sweep of a row of Z. */
export function mulTransposedThin(qt: Float64Array, l: number, a: Mat): Float64Array {
  const { rows: m, cols: n, data } = a;
  const z = new Float64Array(l * n);
  let i = 0;
  for (; i + 4 <= m; i += 4) {
    const a0 = i * n;
    const a1 = a0 + n;
    const a2 = a1 + n;
    const a3 = a2 + n;
    for (let c = 0; c < l; c++) {
      const q0 = qt[c * m + i];
      const q1 = qt[c * m + i + 1];
      const q2 = qt[c * m + i + 2];
      const q3 = qt[c * m + i + 3];
      const zr = c * n;
      for (let j = 0; j < n; j++)
        z[zr + j] += q0 * data[a0 + j] + q1 * data[a1 + j] + q2 * data[a2 + j] + q3 * data[a3 + j];
    }
  }
  for (; i < m; i++) {
    const ar = i * n;
    for (let c = 0; c < l; c++) {
      const q = qt[c * m + i];
      if (q === 0) continue;
      const zr = c * n;
      for (let j = 0; j < n; j++) z[zr + j] += q * data[ar + j];
    }
  }
  return z;
}

/** Squared Frobenius norm. */
export function frobenius2(data: ArrayLike<number>): number {
  let acc = 0;
  for (let i = 0; i < data.length; i++) acc += data[i] * data[i];
  return acc;
}
