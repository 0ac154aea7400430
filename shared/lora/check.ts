// The one check of LoRA settings and factors, wherever an adapter comes from (a PEFT file read for
// merge or eval, a spec for training, the cluster's object store): a file that merge accepts is one
// that eval accepts. Errors name the source and the field (snake_case, as PEFT writes them) or the
// tensor.
import { ChorusError, describe } from '../errors.ts';
import type { LoraConfig } from './types.ts';

/** Throws a ChorusError naming the first setting that PEFT's rules (and ours) rule out. */
export function checkLoraConfig(c: LoraConfig, source: string): void {
  if (!Number.isInteger(c.r) || c.r <= 0)
    throw new ChorusError(`${source}: "r" must be a positive integer, got ${describe(c.r)}`);
  if (!Number.isFinite(c.loraAlpha) || c.loraAlpha <= 0)
    throw new ChorusError(`${source}: "lora_alpha" must be a finite number > 0, got ${describe(c.loraAlpha)}`);
  if (!(c.loraDropout >= 0 && c.loraDropout < 1))
    throw new ChorusError(`${source}: "lora_dropout" must be in [0, 1), got ${describe(c.loraDropout)}`);
  for (const [key, v] of Object.entries(c.rankPattern ?? {})) {
    if (!Number.isInteger(v) || v <= 0)
      throw new ChorusError(
        `${source}: "rank_pattern" ${describe(key, 80)} must be a positive integer, got ${describe(v)}`,
      );
  }
  for (const [key, v] of Object.entries(c.alphaPattern ?? {})) {
    if (!Number.isFinite(v) || v <= 0)
      throw new ChorusError(
        `${source}: "alpha_pattern" ${describe(key, 80)} must be a finite number > 0, got ${describe(v)}`,
      );
  }
}

/** Index of the first NaN or ±Inf in `values`, or -1. */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    // x - x is 0 for every finite x and NaN for NaN and ±Inf: one compare per element.
    const x = values[i];
    if (x - x !== 0) return i;
  }
  return -1;
}

/** Refuses a tensor holding NaN or ±Inf, naming it and the first bad element. */
export function checkFinite(values: ArrayLike<number>, tensor: string, source: string): void {
  const i = firstNonFinite(values);
  if (i >= 0) {
    throw new ChorusError(`${source}: tensor "${tensor}" holds a non-finite value (${values[i]} at element ${i})`);
  }
}

/**
 * Index of the first NaN or ±Inf among F32/F16/BF16 values still in their stored bytes (no float32
 * copy of a BF16 model): a half or bfloat16 value is non-finite exactly when its exponent bits are
 * all ones. -1 when all are finite or the dtype is another.
 */
export function firstNonFiniteStored(dtype: string, bytes: Uint8Array): number {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (dtype === 'F32')
    return firstNonFinite(new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >> 2));
  const mask = dtype === 'F16' ? 0x7c00 : dtype === 'BF16' ? 0x7f80 : 0;
  if (mask === 0) return -1;
  const h = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >> 1);
  for (let i = 0; i < h.length; i++) if ((h[i] & mask) === mask) return i;
  return -1;
}
