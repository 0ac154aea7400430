// Fixed-shape batches [B, T] from token examples: truncation (keep the first T tokens), padding
// with padId (masked out), seeded per-epoch shuffling, an exact resume cursor, and disjoint
// data-parallel shards.

import { ChorusError } from '../errors.ts';
import { epochPermutation } from './random.ts';

export interface TokenExample {
  inputIds: Int32Array;
  lossMask: Uint8Array;
}

export interface Batch {
  /** Row-major [batchSize, seqLen]. */
  inputIds: Int32Array;
  /** [batchSize, seqLen]; 1 where the token is a target (predicted from the tokens before it). */
  targetMask: Float32Array;
  batchSize: number;
  seqLen: number;
  /** Which examples fill the rows (indices into the example array). */
  exampleIndices: number[];
}

export interface BatchOptions {
  batchSize: number;
  seqLen: number;
  padId: number;
  seed: number;
  /** false keeps file order (evaluation). Default true. */
  shuffle?: boolean;
}

/** Position in the data stream: the next example is permutation(epoch)[index]. */
export interface Cursor {
  epoch: number;
  index: number;
}

function checkOptions(opts: BatchOptions, n: number): void {
  const posInt = (v: number) => Number.isInteger(v) && v > 0;
  if (!posInt(opts.batchSize))
    throw new ChorusError(`batching: batchSize must be a positive integer (got ${opts.batchSize})`);
  if (!posInt(opts.seqLen) || opts.seqLen < 2)
    throw new ChorusError(`batching: seqLen must be an integer ≥ 2 (got ${opts.seqLen})`);
  if (!Number.isInteger(opts.padId) || opts.padId < 0)
    throw new ChorusError(`batching: padId must be a non-negative integer (got ${opts.padId})`);
  if (n === 0) throw new ChorusError('batching: no examples');
}

/** Packs the given examples into one batch (rows beyond an example's length are padding). */
function packBatch(examples: readonly TokenExample[], indices: number[], seqLen: number, padId: number): Batch {
  const B = indices.length;
  const inputIds = new Int32Array(B * seqLen).fill(padId);
  const targetMask = new Float32Array(B * seqLen);
  for (let r = 0; r < B; r++) {
    const ex = examples[indices[r]];
    const len = Math.min(ex.inputIds.length, seqLen);
    inputIds.set(ex.inputIds.subarray(0, len), r * seqLen);
    for (let t = 1; t < len; t++) targetMask[r * seqLen + t] = ex.lossMask[t];
  }
  return { inputIds, targetMask, batchSize: B, seqLen, exampleIndices: indices };
}

function checkCursor(cursor: Cursor, n: number): void {
  const { epoch, index } = cursor;
  if (!Number.isInteger(epoch) || epoch < 0 || !Number.isInteger(index) || index < 0 || index > n) {
    throw new ChorusError(`batching: invalid cursor ${JSON.stringify(cursor)} for ${n} examples`);
  }
}

function orderFor(n: number, opts: BatchOptions, epoch: number): Uint32Array {
  if (opts.shuffle === false) return Uint32Array.from({ length: n }, (_, i) => i);
  return epochPermutation(n, opts.seed, epoch);
}

/**
 * One epoch as batches: every example exactly once, the last batch possibly smaller.
 * `epochOffset` picks which epoch's shuffle to use.
 */
export function makeBatches(examples: readonly TokenExample[], opts: BatchOptions & { epochOffset?: number }): Batch[] {
  checkOptions(opts, examples.length);
  const order = orderFor(examples.length, opts, opts.epochOffset ?? 0);
  const out: Batch[] = [];
  for (let i = 0; i < order.length; i += opts.batchSize) {
    out.push(packBatch(examples, Array.from(order.subarray(i, i + opts.batchSize)), opts.seqLen, opts.padId));
  }
  return out;
}

/**
 * An endless stream of full batches for training. Epochs follow one another without a gap: a
 * batch that reaches the end of an epoch is completed from the next epoch's order. `cursor`
 * after any batch restores the identical continuation (checkpoint/resume).
 */
export class BatchStream {
  private epoch: number;
  private index: number;
  private order: Uint32Array;

  constructor(
    private readonly examples: readonly TokenExample[],
    private readonly opts: BatchOptions,
    cursor: Cursor = { epoch: 0, index: 0 },
  ) {
    checkOptions(opts, examples.length);
    checkCursor(cursor, examples.length);
    this.epoch = cursor.epoch;
    this.index = cursor.index;
    this.order = orderFor(examples.length, opts, this.epoch);
  }

  /** Normalised so that an exhausted epoch reads as the start of the next one. */
  get cursor(): Cursor {
    return this.index >= this.order.length
      ? { epoch: this.epoch + 1, index: 0 }
      : { epoch: this.epoch, index: this.index };
  }

  /** Continues from `cursor` (a checkpoint's), as if the stream had been read up to there. */
  seek(cursor: Cursor): void {
    checkCursor(cursor, this.examples.length);
    this.epoch = cursor.epoch;
    this.index = cursor.index;
    this.order = orderFor(this.examples.length, this.opts, this.epoch);
  }

  next(): Batch {
    const rows: number[] = [];
    while (rows.length < this.opts.batchSize) {
      if (this.index >= this.order.length) {
        this.epoch++;
        this.index = 0;
        this.order = orderFor(this.examples.length, this.opts, this.epoch);
      }
      rows.push(this.order[this.index++]);
    }
    return packBatch(this.examples, rows, this.opts.seqLen, this.opts.padId);
  }
}

/** Replica `replica` of `replicas`: every replicas-th example, so shards are disjoint, cover all, and differ in size by at most one. */
export function shardExamples<T>(examples: readonly T[], replica: number, replicas: number): T[] {
  if (!Number.isInteger(replicas) || replicas < 1)
    throw new ChorusError(`sharding: replicas must be a positive integer (got ${replicas})`);
  if (!Number.isInteger(replica) || replica < 0 || replica >= replicas) {
    throw new ChorusError(`sharding: replica must be an integer in [0, ${replicas}) (got ${replica})`);
  }
  if (examples.length < replicas)
    throw new ChorusError(`sharding: ${examples.length} examples cannot feed ${replicas} replicas`);
  return examples.filter((_, i) => i % replicas === replica);
}

/**
 * The training batches of data-parallel replica `replica` of `replicas`: its shard of the examples
 * (shardExamples), shuffled per epoch from `seed`. `source` names the data in errors.
 */
export function replicaBatchStream(
  examples: readonly TokenExample[],
  opts: BatchOptions & { replica: number; replicas: number; source: string },
): BatchStream {
  if (examples.length < opts.replicas) {
    throw new ChorusError(`${opts.source}: ${examples.length} examples cannot feed ${opts.replicas} replicas`);
  }
  return new BatchStream(shardExamples(examples, opts.replica, opts.replicas), opts);
}

/** Evaluation batches in file order, the last one possibly smaller; at most maxBatches. */
export function evalBatches(
  examples: readonly TokenExample[],
  opts: { batchSize: number; seqLen: number; padId: number; maxBatches?: number },
): Batch[] {
  if (examples.length === 0) return [];
  return makeBatches(examples, { ...opts, seed: 0, shuffle: false }).slice(0, opts.maxBatches ?? Infinity);
}
