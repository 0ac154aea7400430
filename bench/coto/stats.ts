// Mean and 95 % confidence interval of a small sample (Student's t, two-sided).

/** t_{0.975, df} for df = 1..30; beyond, the normal 1.96 is close enough. */
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11,
  2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

export interface Summary {
  n: number;
  mean: number;
  /** Half-width of the 95 % interval (NaN with fewer than two values). */
  ci: number;
}

export function summarise(xs: number[]): Summary {
  const n = xs.length;
  if (n === 0) return { n, mean: NaN, ci: NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { n, mean, ci: NaN };
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
  const t = n - 1 <= T975.length ? T975[n - 2] : 1.96;
  return { n, mean, ci: (t * sd) / Math.sqrt(n) };
}
