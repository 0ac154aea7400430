// JSONL training/eval data → token examples. One JSON object per line, in one of three shapes:
//   {"text": "..."}                       loss on every predicted token
//   {"prompt": "...", "completion": "..."} loss on the completion tokens only (they are the label
//                                          that accuracy is measured on)
//   {"input_ids": [..], "loss_mask"?: [0|1, ..]}  already tokens (no tokenizer needed); loss on
//                                          every predicted token unless loss_mask says otherwise
// Blank lines are skipped. lossMask[i] = 1 means token i is a TARGET, predicted from tokens < i,
// so lossMask[0] is always 0. Text shapes get BOS in front and EOS at the end when the tokenizer
// has them (addBos/addEos turn that off); input_ids are taken verbatim.

import { readFile, stat } from 'node:fs/promises';
import { ChorusError } from '../errors.ts';
import { jsonSyntaxError } from '../json-error.ts';
import type { Tokenizer } from './tokenizer.ts';

export interface Example {
  inputIds: Int32Array;
  lossMask: Uint8Array;
  kind: 'text' | 'completion' | 'ids';
  /** For completions: index of the first completion token (accuracy is measured from here). */
  completionStart?: number;
}

export interface DatasetOptions {
  /** Needed for "text" and "prompt"/"completion" lines. */
  tokenizer?: Tokenizer;
  /** Every id must be below this (the model's vocab_size); defaults to the tokenizer's. */
  vocabSize?: number;
  addBos?: boolean;
  addEos?: boolean;
}

/** What kind of value a line held where a token id belongs (the value itself is the file's content). */
function kindOf(v: unknown): string {
  if (typeof v === 'number') return v < 0 ? 'a negative number' : 'a number with a fraction';
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}

function fail(source: string, line: number, what: string): never {
  throw new ChorusError(`${source}:${line}: ${what}`);
}

/** Tokens of prompt+completion with the boundary where the prompt's own tokens end. */
function encodeCompletion(tok: Tokenizer, prompt: string, completion: string): { ids: number[]; boundary: number } {
  // Tokenising the joined text keeps merges across the boundary as the model will see them at
  // inference; when the prompt's tokens are not a prefix of it, fall back to concatenation.
  const p = tok.encode(prompt);
  const full = tok.encode(prompt + completion);
  if (full.length > p.length && p.every((id, i) => full[i] === id)) return { ids: full, boundary: p.length };
  return { ids: [...p, ...tok.encode(completion)], boundary: p.length };
}

function exampleFromLine(obj: Record<string, unknown>, opts: DatasetOptions, source: string, line: number): Example {
  const tok = opts.tokenizer;
  const vocab = opts.vocabSize ?? tok?.vocabSize;
  const bos = opts.addBos !== false && tok?.bosId !== undefined ? [tok.bosId] : [];
  const eos = opts.addEos !== false && tok?.eosId !== undefined ? [tok.eosId] : [];
  let ids: number[];
  let mask: number[];
  let kind: Example['kind'];
  let completionStart: number | undefined;

  if ('input_ids' in obj) {
    const raw = obj.input_ids;
    if (!Array.isArray(raw)) fail(source, line, '"input_ids" must be an array of integers');
    for (let i = 0; i < raw.length; i++) {
      const v = raw[i];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
        fail(source, line, `"input_ids"[${i}] must be a non-negative integer (got ${kindOf(v)})`);
      if (vocab !== undefined && v >= vocab)
        fail(source, line, `"input_ids"[${i}] is outside the vocabulary (size ${vocab})`);
    }
    ids = raw as number[];
    kind = 'ids';
    if ('loss_mask' in obj) {
      const m = obj.loss_mask;
      if (!Array.isArray(m) || m.length !== ids.length || !m.every((x) => x === 0 || x === 1)) {
        fail(source, line, `"loss_mask" must be an array of 0/1 as long as "input_ids" (${ids.length})`);
      }
      mask = m as number[];
    } else {
      mask = ids.map(() => 1);
    }
  } else if ('text' in obj) {
    if (typeof obj.text !== 'string') fail(source, line, '"text" must be a string');
    if (!tok) fail(source, line, '"text" needs a tokenizer (the model directory has none; give "input_ids" instead)');
    ids = [...bos, ...tok.encode(obj.text), ...eos];
    mask = ids.map(() => 1);
    kind = 'text';
  } else if ('prompt' in obj || 'completion' in obj) {
    if (typeof obj.prompt !== 'string') fail(source, line, '"prompt" must be a string');
    if (typeof obj.completion !== 'string') fail(source, line, '"completion" must be a string');
    if (!tok)
      fail(
        source,
        line,
        '"prompt"/"completion" need a tokenizer (the model directory has none; give "input_ids" instead)',
      );
    const { ids: pc, boundary } = encodeCompletion(tok, obj.prompt, obj.completion);
    ids = [...bos, ...pc, ...eos];
    completionStart = bos.length + boundary;
    mask = ids.map((_, i) => (i >= completionStart! ? 1 : 0));
    kind = 'completion';
  } else {
    fail(source, line, 'expected an object with "text", "prompt" and "completion", or "input_ids"');
  }

  if (vocab !== undefined && kind !== 'ids') {
    const bad = ids.find((id) => id >= vocab);
    if (bad !== undefined)
      fail(source, line, `token id ${bad} from the tokenizer is outside the model's vocabulary (size ${vocab})`);
  }
  const lossMask = Uint8Array.from(mask);
  lossMask[0] = 0;
  if (!lossMask.some((m) => m === 1)) {
    fail(
      source,
      line,
      kind === 'completion'
        ? 'the completion is empty: nothing to predict'
        : `only ${ids.length} token(s): nothing to predict`,
    );
  }
  return {
    inputIds: Int32Array.from(ids),
    lossMask,
    kind,
    ...(completionStart !== undefined ? { completionStart } : {}),
  };
}

/** Parses JSONL text; `source` names the file in errors (as "file:line: …"). */
export function parseJsonl(text: string, source: string, opts: DatasetOptions = {}): Example[] {
  const out: Example[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim();
    if (raw === '') continue;
    let obj: unknown;
    try {
      obj = JSON.parse(raw);
    } catch (err) {
      fail(source, i + 1, jsonSyntaxError(err));
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj))
      fail(source, i + 1, 'each line must be a JSON object');
    out.push(exampleFromLine(obj as Record<string, unknown>, opts, source, i + 1));
  }
  if (out.length === 0) throw new ChorusError(`${source}: no examples (the file is empty)`);
  return out;
}

/** Data files above this are refused before they are read (a JS string holds at most ~512 MiB). */
const MAX_DATA_BYTES = 512 << 20;

/** A data file's text; a missing, unreadable or too large file is a ChorusError naming it (and only it). */
export async function readDataText(path: string): Promise<string> {
  try {
    const size = (await stat(path)).size;
    if (size > MAX_DATA_BYTES)
      throw new ChorusError(`${path}: data file too large (${size} bytes; at most ${MAX_DATA_BYTES >> 20} MiB)`);
    return await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof ChorusError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new ChorusError(code === 'ENOENT' ? `${path}: data file not found` : `${path}: cannot read (${code})`);
  }
}

export async function loadJsonl(path: string, opts: DatasetOptions = {}): Promise<Example[]> {
  return parseJsonl(await readDataText(path), path, opts);
}

/** Whether any line of the data needs a tokenizer (so a model dir without one can still train on ids). */
export function needsTokenizer(text: string): boolean {
  for (const line of text.split('\n')) {
    const raw = line.trim();
    if (raw === '') continue;
    try {
      const o = JSON.parse(raw);
      if (o && typeof o === 'object' && !('input_ids' in o)) return true;
    } catch {
      return false; // parseJsonl reports the line; no tokenizer is needed to say it is not JSON
    }
  }
  return false;
}
