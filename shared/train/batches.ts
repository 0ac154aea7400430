// How the trainer walks its data, on top of shared/data/batches.ts: this replica's shard
// (shardExamples), an endless seeded-shuffle batch stream whose cursor checkpoints save and
// --resume restores, and in-order evaluation batches.
import { ChorusError } from '../errors.ts';
import {
  BatchStream as DataStream,
  makeBatches,
  shardExamples,
  type Cursor,
  type TokenExample,
} from '../data/batches.ts';
import type { TokenBatch } from '../model/loss.ts';

export type TrainExample = TokenExample;
export type BatchCursor = Cursor;

export interface BatchStreamOptions {
  batchSize: number;
  seqLen: number;
  seed: number;
  replica: number;
  replicas: number;
  padId: number;
  /** Names the data in errors. */
  source: string;
}

export class BatchStream {
  private readonly shard: TrainExample[];
  private stream: DataStream;

  constructor(
    examples: readonly TrainExample[],
    private readonly opts: BatchStreamOptions,
  ) {
    if (examples.length < opts.replicas) {
      throw new ChorusError(`${opts.source}: ${examples.length} examples cannot feed ${opts.replicas} replicas`);
    }
    this.shard = shardExamples(examples, opts.replica, opts.replicas);
    this.stream = this.open({ epoch: 0, index: 0 });
  }

  private open(cursor: Cursor): DataStream {
    const o = this.opts;
    return new DataStream(
      this.shard,
      { batchSize: o.batchSize, seqLen: o.seqLen, padId: o.padId, seed: o.seed },
      cursor,
    );
  }

  next(): TokenBatch {
    return this.stream.next();
  }

  cursor(): BatchCursor {
    return this.stream.cursor;
  }

  seek(c: BatchCursor): void {
    this.stream = this.open(c);
  }
}

/** Evaluation batches in file order, the last one possibly smaller; at most maxBatches. */
export function evalBatches(
  examples: readonly TrainExample[],
  batchSize: number,
  seqLen: number,
  maxBatches = Infinity,
  padId = 0,
): TokenBatch[] {
  if (examples.length === 0) return [];
  return makeBatches(examples, { batchSize, seqLen, padId, seed: 0, shuffle: false }).slice(0, maxBatches);
}
