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
