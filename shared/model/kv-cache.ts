// Key/value cache for incremental decoding. The model's attention calls `extend` once per layer with
// the new positions' keys and values ([B, kvHeads, T, headDim], RoPE already applied at their
// absolute positions) and attends over what it returns: every cached position plus the new ones.
// After the forward pass the model calls `advance(T)`, so `length` is the number of positions whose
// keys and values are held. The cache owns its tensors (kept out of any tf.tidy scope) and
// replaces them on each extend; dispose() frees the last ones.
import { tf } from '../tensor/engine.ts';
import { ChorusError } from '../errors.ts';

export class KvCache {
  private readonly keys: Array<tf.Tensor4D | null>;
  private readonly values: Array<tf.Tensor4D | null>;
  private cached = 0;
  private disposed = false;

  constructor(readonly numLayers: number) {
    if (!Number.isInteger(numLayers) || numLayers <= 0)
      throw new ChorusError(`KvCache: numLayers must be a positive integer, got ${numLayers}`);
    this.keys = new Array<tf.Tensor4D | null>(numLayers).fill(null);
    this.values = new Array<tf.Tensor4D | null>(numLayers).fill(null);
  }

  /** Positions held (the absolute position of the next token fed to the model). */
  get length(): number {
    return this.cached;
  }

  /** Appends layer `layer`'s new keys/values along the sequence axis; returns all of them. */
  extend(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): { k: tf.Tensor4D; v: tf.Tensor4D } {
    if (this.disposed) throw new Error('KvCache used after dispose()');
    const oldK = this.keys[layer];
    const oldV = this.values[layer];
    const held = oldK ? oldK.shape[2] : 0;
    if (held !== this.cached)
      throw new ChorusError(`KvCache: layer ${layer} holds ${held} positions, the cache ${this.cached}`);
    if (oldK && oldK.shape[0] !== k.shape[0])
      throw new ChorusError(`KvCache: batch of ${k.shape[0]} rows, the cache holds ${oldK.shape[0]}`);
    const fullK = tf.keep(oldK ? (tf.concat([oldK, k], 2) as tf.Tensor4D) : tf.clone(k));
    const fullV = tf.keep(oldV ? (tf.concat([oldV, v], 2) as tf.Tensor4D) : tf.clone(v));
    oldK?.dispose();
    oldV?.dispose();
    this.keys[layer] = fullK;
    this.values[layer] = fullV;
    return { k: fullK, v: fullV };
  }

  /** Called by the model once every layer has been extended by `count` positions. */
  advance(count: number): void {
    this.cached += count;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of [...this.keys, ...this.values]) t?.dispose();
    this.keys.fill(null);
    this.values.fill(null);
  }
}
