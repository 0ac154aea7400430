// How the trainer walks its data: this replica's shard, reshuffled every epoch from
// (seed, epoch, replica), cut into fixed [batch, seq_len] batches, with a cursor that checkpoints
// save and --resume restores.
// PROVISIONAL: the data module (shared/data/dataset.ts: makeBatches, shardExamples, seeded
// shuffling) is being written concurrently; once it lands this file delegates to it and keeps only
// the trainer-facing wrapper.
import { ChorusError } from '../errors.ts';
import { SplitMix32, deriveSeed } from '../tensor/random.ts';
import type { TokenBatch } from '../model/loss.ts';

/** One tokenised example: ids and which of them carry loss (1) or not (0). */
export interface TrainExample {
  inputIds: ArrayLike<number>;
  lossMask: ArrayLike<number>;
}

export interface BatchCursor {
  epoch: number;
  /** Position inside this epoch's permutation. */
  index: number;
}

export interface BatchStreamOptions {
  batchSize: number;
  seqLen: number;
  seed: number;
  replica: number;
  replicas: number;
  /** Names the data in errors. */
  source: string;
}

function toBatch(examples: TrainExample[], seqLen: number): TokenBatch {
  const inputIds = new Int32Array(examples.length * seqLen);
  const targetMask = new Float32Array(examples.length * seqLen);
  examples.forEach((ex, row) => {
    // Longer examples are cut at seq_len; shorter ones padded with id 0 that carries no loss.
    const n = Math.min(ex.inputIds.length, seqLen);
    for (let t = 0; t < n; t++) {
      inputIds[row * seqLen + t] = ex.inputIds[t];
      targetMask[row * seqLen + t] = ex.lossMask[t] ? 1 : 0;
    }
  });
  return { inputIds, targetMask, batchSize: examples.length, seqLen };
}

export class BatchStream {
  private readonly shard: TrainExample[];
  private order: number[] = [];
  private epoch = 0;
  private index = 0;

  constructor(examples: TrainExample[], private readonly opts: BatchStreamOptions) {
    this.shard = examples.filter((_, i) => i % opts.replicas === opts.replica);
    if (this.shard.length === 0) {
      throw new ChorusError(
        `${opts.source}: no training examples for replica ${opts.replica} of ${opts.replicas} (${examples.length} examples in all)`,
      );
    }
    this.order = this.permutation(0);
  }

  private permutation(epoch: number): number[] {
    const order = Array.from(this.shard, (_, i) => i);
    const rng = new SplitMix32(deriveSeed(this.opts.seed, 0xda7a, epoch, this.opts.replica));
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rng.uniform() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    return order;
  }

  next(): TokenBatch {
    const picked: TrainExample[] = [];
    while (picked.length < this.opts.batchSize) {
      if (this.index >= this.order.length) {
        this.epoch += 1;
        this.index = 0;
        this.order = this.permutation(this.epoch);
      }
      picked.push(this.shard[this.order[this.index++]]);
    }
    return toBatch(picked, this.opts.seqLen);
  }

  cursor(): BatchCursor {
    return { epoch: this.epoch, index: this.index };
  }

  seek(c: BatchCursor): void {
    if (!Number.isInteger(c.epoch) || c.epoch < 0 || !Number.isInteger(c.index) || c.index < 0 || c.index > this.shard.length) {
      throw new ChorusError(`${this.opts.source}: data cursor ${JSON.stringify(c)} does not fit ${this.shard.length} examples`);
    }
    this.epoch = c.epoch;
    this.index = c.index;
    this.order = this.permutation(c.epoch);
  }
}

/** Evaluation batches, in order, the last one possibly smaller. */
export function* evalBatches(examples: TrainExample[], batchSize: number, seqLen: number, maxBatches = Infinity): Generator<TokenBatch> {
  for (let start = 0, n = 0; start < examples.length && n < maxBatches; start += batchSize, n++) {
    yield toBatch(examples.slice(start, start + batchSize), seqLen);
  }
}
