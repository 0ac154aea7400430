// Parsing of command-line values shared by the local commands: every error names the flag.
import { ChorusError } from '../../shared/errors.ts';

export function parseNumberList(text: string, flag: string): number[] {
  return text.split(',').map((part, i) => {
    const t = part.trim();
    const v = Number(t);
    if (t === '' || !Number.isFinite(v)) throw new ChorusError(`${flag}: entry ${i + 1} ("${part}") is not a number`);
    return v;
  });
}

export function parseRank(text: string | undefined, flag = '--rank'): number | 'full' | undefined {
  if (text === undefined) return undefined;
  if (text === 'full') return 'full';
  const v = Number(text);
  if (!Number.isInteger(v) || v < 1)
    throw new ChorusError(`${flag} must be a positive integer or "full", got "${text}"`);
  return v;
}

export function parseNumber(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v)) throw new ChorusError(`${flag} must be a number, got "${text}"`);
  return v;
}

export function parseDtype(text: string): 'F32' | 'F16' | 'BF16' {
  const t = text.toUpperCase();
  if (t !== 'F32' && t !== 'F16' && t !== 'BF16')
    throw new ChorusError(`--dtype must be F32, F16 or BF16, got "${text}"`);
  return t;
}

/** A positive integer flag (undefined stays undefined). */
export function parsePositiveInt(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n <= 0) {
    throw new ChorusError(`${flag} must be a positive integer, got '${text}'`);
  }
  return n;
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
};

/** A size like "8GiB", "5GB" (10⁹, as Hugging Face's max_shard_size), "512M" (2²⁰) or plain bytes. */
export function parseByteSize(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? BYTE_UNITS[m[2].toLowerCase()] : undefined;
  const bytes = m && unit ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new ChorusError(`${flag} must be a size such as 8GiB, 500MB or 1048576, got '${text}'`);
  }
  return bytes;
}
