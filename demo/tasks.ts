// The demo's string-transformation tasks. Every example has one format, `<op>:<input>=` → `<output>\n`,
// over the same inputs (lowercase letters, length MIN_LEN..MAX_LEN), so the base model's pretraining ops
// and the held-out task ops differ only in the rule — that is what makes base-vs-adapter scores fair.
// Generation is deterministic from a seed (mulberry32), so train/eval files are reproducible.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChorusError } from '../shared/errors.ts';

export const MIN_LEN = 3;
export const MAX_LEN = 7;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz';

export interface Example {
  prompt: string;
  completion: string;
}

export interface Op {
  name: string;
  /** Shown in the demo table. */
  description: string;
  apply(input: string): string;
}

const upper = (s: string) => s.toUpperCase();
const reverse = (s: string) => [...s].reverse().join('');
const rotl = (s: string) => s.slice(1) + s[0];

/** Ops the base model is pretrained on: identity, a per-letter map, and two re-orderings. */
export const BASE_OPS: Op[] = [
  { name: 'copy', description: 'copy the string', apply: (s) => s },
  { name: 'up', description: 'upper-case every letter', apply: upper },
  { name: 'rev', description: 'reverse the string', apply: reverse },
  { name: 'rotl', description: 'move the first letter to the end', apply: rotl },
];

/**
 * Held-out ops the demo trains adapters for: each composes two rules the base knows, over the same
 * inputs and in the same format, so the base has every skill but not the combination.
 */
export const TASK_OPS: Op[] = [
  { name: 'revup', description: 'reverse, then upper-case', apply: (s) => upper(reverse(s)) },
  { name: 'rotup', description: 'move the first letter to the end, then upper-case', apply: (s) => upper(rotl(s)) },
  { name: 'rotrev', description: 'move the first letter to the end, then reverse', apply: (s) => reverse(rotl(s)) },
];

export const ALL_OPS: Op[] = [...BASE_OPS, ...TASK_OPS];

export function findOp(name: string): Op {
  const op = ALL_OPS.find((o) => o.name === name);
  if (!op) throw new ChorusError(`unknown demo task "${name}" (known: ${ALL_OPS.map((o) => o.name).join(', ')})`);
  return op;
}

/** mulberry32: tiny, seedable, and identical in every process. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomInput(rand: () => number): string {
  const len = MIN_LEN + Math.floor(rand() * (MAX_LEN - MIN_LEN + 1));
  let s = '';
  for (let i = 0; i < len; i++) s += ALPHABET[Math.floor(rand() * ALPHABET.length)];
  return s;
}

export function makeExample(op: Op, input: string): Example {
  return { prompt: `${op.name}:${input}=`, completion: `${op.apply(input)}\n` };
}

/**
 * `count` examples of `op`. Inputs in `exclude` are skipped, so eval sets never overlap the train set.
 * The seed is mixed with the op name so that tasks drawn with the same seed see different inputs.
 */
export function generate(op: Op, count: number, seed: number, exclude?: Set<string>): Example[] {
  let h = seed >>> 0;
  for (const ch of op.name) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  const rand = rng(h);
  const out: Example[] = [];
  const seen = new Set<string>();
  while (out.length < count) {
    const input = randomInput(rand);
    if (exclude?.has(input) || seen.has(input)) continue;
    seen.add(input);
    out.push(makeExample(op, input));
  }
  return out;
}

export const inputOf = (e: Example) => e.prompt.slice(e.prompt.indexOf(':') + 1, -1);

function toJsonl(examples: Example[]): string {
  return examples.map((e) => JSON.stringify(e)).join('\n') + '\n';
}

export interface TaskFiles {
  task: string;
  train: string;
  eval: string;
}

/** Writes `<dir>/<task>.train.jsonl` and `<dir>/<task>.eval.jsonl` for each task. */
export function writeTaskData(
  dir: string,
  tasks: string[],
  opts: { train: number; eval: number; seed: number },
): TaskFiles[] {
  mkdirSync(dir, { recursive: true });
  return tasks.map((name) => {
    const op = findOp(name);
    const evalSet = generate(op, opts.eval, opts.seed + 1);
    const train = generate(op, opts.train, opts.seed, new Set(evalSet.map(inputOf)));
    const files = { task: name, train: join(dir, `${name}.train.jsonl`), eval: join(dir, `${name}.eval.jsonl`) };
    writeFileSync(files.train, toJsonl(train));
    writeFileSync(files.eval, toJsonl(evalSet));
    return files;
  });
}
