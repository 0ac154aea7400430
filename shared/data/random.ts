// Seeded shuffling for the data pipeline. An epoch's order depends only on (seed, epoch), so a
// cursor {epoch, index} is all a checkpoint needs to resume the exact same sequence of batches,
// in any process. (Kept here rather than borrowed from shared/tensor/random.ts so that the data
// order never changes when the weight-initialisation generator does.)

/** SplitMix32-style generator: 32-bit state, passes the statistical needs of shuffling. */
class DataRng {
  private state: number;

  constructor(seed: number, stream = 0) {
    this.state = mix(
      mix(Math.trunc(seed) ^ Math.imul(Math.floor(seed / 4294967296) | 0, 0x9e3779b9)) ^
        Math.imul(stream + 1, 0x85ebca6b),
    );
  }

  nextU32(): number {
    this.state = (this.state + 0x9e3779b9) | 0;
    return mix(this.state) >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    return ((this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6)) / 9007199254740992;
  }

  /** Uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x21f0aaad);
  x = Math.imul(x ^ (x >>> 15), 0x735a2d97);
  return (x ^ (x >>> 15)) | 0;
}

/** The order of `n` examples in `epoch`: a Fisher–Yates permutation drawn from (seed, epoch). */
export function epochPermutation(n: number, seed: number, epoch: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const rng = new DataRng(seed, epoch);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}
