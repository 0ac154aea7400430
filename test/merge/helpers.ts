// Test helpers: random adapters and plain float64 reference computations, written independently of
// shared/merge (straight loops, sort-based selection, Jacobi eigenvalues of the Gram matrix).
import type { LoraAdapter, LoraModule } from '../../shared/lora/types.ts';

/** Small deterministic generator (xorshift32) distinct from the library's, for test data only. */
export function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
  return {
    uniform: next,
    normal: () => {
      const u = Math.max(next(), 1e-12);
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
    },
  };
}

export function randomModule(out: number, inp: number, rank: number, scaling: number, seed: number): LoraModule {
  const g = rng(seed);
  const a = new Float32Array(rank * inp);
  const b = new Float32Array(out * rank);
  for (let i = 0; i < a.length; i++) a[i] = g.normal();
  for (let i = 0; i < b.length; i++) b[i] = g.normal() * 0.5;
  return { a, b, rank, inFeatures: inp, outFeatures: out, scaling };
}

export interface Spec {
  shapes: Record<string, [number, number]>;
  rank: number;
  alpha: number;
  rslora?: boolean;
}

export function randomAdapter(spec: Spec, seed: number, rankOverride?: Record<string, number>): LoraAdapter {
  const modules = new Map<string, LoraModule>();
  let i = 0;
  for (const [name, [out, inp]] of Object.entries(spec.shapes)) {
    const r = rankOverride?.[name] ?? spec.rank;
    const s = spec.rslora ? spec.alpha / Math.sqrt(r) : spec.alpha / r;
    modules.set(name, randomModule(out, inp, r, s, seed * 1000 + i++));
  }
  const targets = [...new Set(Object.keys(spec.shapes).map((n) => n.slice(n.lastIndexOf('.') + 1)))];
  return {
    config: { r: spec.rank, loraAlpha: spec.alpha, targetModules: targets, loraDropout: 0, useRslora: !!spec.rslora },
    modules,
  };
}

/** scaling · B A as a plain number[][] (out × in). */
export function deltaOf(m: LoraModule): number[][] {
  const d: number[][] = [];
  for (let i = 0; i < m.outFeatures; i++) {
    const row: number[] = [];
    for (let j = 0; j < m.inFeatures; j++) {
      let acc = 0;
      for (let p = 0; p < m.rank; p++) acc += m.b[i * m.rank + p] * m.a[p * m.inFeatures + j];
      row.push(m.scaling * acc);
    }
    d.push(row);
  }
  return d;
}

export const flat = (x: number[][]) => x.flat();

export function maxAbsDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  if (x.length !== y.length) throw new Error(`length ${x.length} vs ${y.length}`);
  let d = 0;
  for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - y[i]));
  return d;
}

export function maxAbs(x: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i]));
  return d;
}

/** Keep the floor(density·n) largest |x| (stable sort: equal magnitudes kept in index order). */
export function refTrim(x: number[], density: number): number[] {
  if (density >= 1) return x.slice();
  const k = Math.floor(density * x.length);
  const order = x.map((v, i) => [Math.abs(v), i] as const).sort((p, q) => q[0] - p[0] || p[1] - q[1]);
  const keep = new Set(order.slice(0, k).map((p) => p[1]));
  return x.map((v, i) => (keep.has(i) ? v : 0));
}

/** PEFT's ties/disjoint merge, entry by entry. */
export function refTies(tensors: number[][], weights: number[], method: 'total' | 'frequency'): number[] {
  const n = tensors[0].length;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let elect = 0;
    for (const t of tensors) elect += method === 'total' ? t[i] : Math.sign(t[i]);
    const sign = elect >= 0 ? 1 : -1;
    let num = 0;
    let cnt = 0;
    tensors.forEach((t, k) => {
      if (Math.sign(t[i]) === sign) {
        num += weights[k] * t[i];
        cnt++;
      }
    });
    out.push(num / Math.max(cnt, 1));
  }
  return out;
}

export function refLinear(tensors: number[][], weights: number[]): number[] {
  return tensors[0].map((_, i) => tensors.reduce((s, t, k) => s + weights[k] * t[i], 0));
}

/** Eigenvalues of a symmetric matrix by the classical (two-sided) Jacobi eigenvalue method, descending. */
export function symmetricEigenvalues(s: number[][]): number[] {
  const n = s.length;
  const a = s.map((r) => r.slice());
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p][q] * a[p][q];
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (Math.abs(a[p][q]) < 1e-300) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const sn = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k][p];
          const akq = a[k][q];
          a[k][p] = c * akp - sn * akq;
          a[k][q] = sn * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k];
          const aqk = a[q][k];
          a[p][k] = c * apk - sn * aqk;
          a[q][k] = sn * apk + c * aqk;
        }
      }
    }
  }
  return a.map((r, i) => r[i]).sort((x, y) => y - x);
}

/** Singular values of a dense matrix from the eigenvalues of the smaller Gram matrix. */
export function refSingularValues(d: number[][]): number[] {
  const m = d.length;
  const n = d[0].length;
  const small = Math.min(m, n);
  const g: number[][] = [];
  for (let i = 0; i < small; i++) {
    g.push([]);
    for (let j = 0; j < small; j++) {
      let acc = 0;
      if (n <= m) for (let k = 0; k < m; k++) acc += d[k][i] * d[k][j];
      else for (let k = 0; k < n; k++) acc += d[i][k] * d[j][k];
      g[i].push(acc);
    }
  }
  return symmetricEigenvalues(g).map((x) => Math.sqrt(Math.max(0, x)));
}

export function frob2(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return s;
}
