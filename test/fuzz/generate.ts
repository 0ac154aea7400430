// Seeded generators of hostile input for the fuzz suite: values chosen to break parsers (huge and
// negative numbers, deep nesting, long and odd strings, lone surrogates, catastrophic regexes) and
// mutations of valid input (set a field to one of those, delete one, add one, flip bytes, cut,
// repeat). Same seed, same cases: a failure is reproduced by its seed and case number.
import { SplitMix32 } from '../../shared/tensor/random.ts';

export class Rng {
  private readonly r: SplitMix32;
  constructor(seed: number) {
    this.r = new SplitMix32(seed);
  }
  int(n: number): number {
    return this.r.next() % n;
  }
  chance(p: number): boolean {
    return this.r.uniform() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

/** Regexes that take exponential time on a backtracking engine, and some that RE2 refuses. */
export const EVIL_PATTERNS = [
  '(.*)*x',
  '(a|a)*b',
  '(.*\\.)*q_proj$x',
  '((a+)+)+c',
  '(x+x+)+y',
  '(a)\\1',
  '(?=q)',
  '(?<!v)_proj',
  '[',
  '(',
  '\\',
  'a{1000}{1000}',
  '.*'.repeat(200),
  '(?P<n>q|v)_proj',
  'q_proj',
  '.*\\.(q|v)_proj',
  'x'.repeat(3000),
];

const STRINGS = [
  '',
  ' ',
  'a'.repeat(300),
  'x'.repeat(70_000),
  '\ud800',
  '\udfff abc',
  '\ufeff',
  'é',
  '\u0000',
  '../../etc/passwd',
  '/etc/shadow',
  'chorus-object://file/abc/..',
  '__proto__',
  'constructor',
  '%s%n',
  '${x}',
  '*alias',
  '&anchor',
  '\n\n',
  'q_proj',
  'all-linear',
];

const NUMBERS = [
  0,
  -1,
  1,
  2,
  0.5,
  -0.0,
  1e308,
  -1e308,
  2 ** 53,
  2 ** 53 + 2,
  1e8,
  100_000_000,
  4097,
  131_073,
  1_000_001,
  1e-320,
  Number.MAX_SAFE_INTEGER,
  3.7,
];

function deep(depth: number, leaf: unknown, rng: Rng): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = rng.chance(0.5) ? [v] : { k: v };
  return v;
}

/** One hostile JSON value. */
export function hostileValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 2 ? 4 : 8)) {
    case 0:
      return rng.pick(NUMBERS);
    case 1:
      return rng.pick(STRINGS);
    case 2:
      return rng.pick([null, true, false]);
    case 3:
      return rng.pick(EVIL_PATTERNS);
    case 4:
      // Thousands of levels are made as text (deepText): values stay shallow enough to clone and print.
      return deep(rng.pick([5, 40, 200]), rng.pick(NUMBERS), rng);
    case 5:
      return Array.from({ length: rng.pick([0, 2, 100, 5000]) }, () => rng.pick(NUMBERS));
    case 6: {
      const o: Record<string, unknown> = {};
      const wide = depth === 0 && rng.chance(0.3);
      for (let i = wide ? 2000 : rng.pick([0, 1, 3]); i > 0; i--)
        o[`${rng.pick(EVIL_PATTERNS).slice(0, 40)}${i}`] = wide ? rng.pick(NUMBERS) : hostileValue(rng, depth + 1);
      return o;
    }
    default:
      return [hostileValue(rng, depth + 1), hostileValue(rng, depth + 1)];
  }
}

type Obj = Record<string, unknown>;

/** Every path (list of keys) to a value inside `v`, objects and arrays alike. */
function paths(v: unknown, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []) {
  if (v !== null && typeof v === 'object') {
    for (const [k, child] of Object.entries(v as Obj)) {
      const p = [...prefix, Array.isArray(v) ? Number(k) : k];
      out.push(p);
      paths(child, p, out);
    }
  }
  return out;
}

/** A copy of `value` with a few structural mutations: fields set to hostile values, deleted or added. */
export function mutateValue(value: unknown, rng: Rng): unknown {
  const v = structuredClone(value) as Obj;
  for (let n = 1 + rng.int(3); n > 0; n--) {
    const all = paths(v);
    if (all.length === 0) break;
    const p = rng.pick(all);
    let parent: Obj = v;
    for (const k of p.slice(0, -1)) parent = parent[k as string] as Obj;
    const key = p[p.length - 1] as string;
    const op = rng.int(10);
    if (op < 6) parent[key] = hostileValue(rng);
    else if (op < 8) delete parent[key];
    else if (!Array.isArray(parent))
      parent[rng.pick(['extra', '__proto__', 'x'.repeat(100), key + '_'])] = hostileValue(rng);
  }
  return v;
}

/** JSON text nested `levels` deep (5–10k levels broke error formatting), built without recursion. */
export function deepText(levels: number): string {
  return `${'['.repeat(levels)}1${']'.repeat(levels)}`;
}

/** Text-level mutations of a spec or config: aliases, duplicate keys, BOM, flips, cuts, repeats. */
export function mutateText(text: string, rng: Rng): string {
  switch (rng.int(9)) {
    case 0: {
      let bomb = 'a: &a [x, x, x, x, x, x, x, x, x]\n';
      for (let i = 0; i < 9; i++) {
        const p = String.fromCharCode(97 + i);
        const c = String.fromCharCode(98 + i);
        bomb += `${c}: &${c} [${Array(9).fill(`*${p}`).join(', ')}]\n`;
      }
      return text + '\n' + bomb;
    }
    case 1:
      return text.replace(/: /, ': *undefined_alias ');
    case 2: {
      const lines = text.split('\n');
      const i = rng.int(lines.length);
      lines.splice(i, 0, lines[i]);
      return lines.join('\n');
    }
    case 3:
      return '\ufeff' + text;
    case 4: {
      const chars = [...text];
      for (let n = 1 + rng.int(5); n > 0; n--)
        chars[rng.int(chars.length)] = rng.pick(['{', '[', ':', '"', '\\', '&', '*', '\t', '\ud800', '#', '-']);
      return chars.join('');
    }
    case 5:
      return text.slice(0, rng.int(text.length + 1));
    case 6:
      return `${text}\nk: ${deepText(rng.pick([50, 5000, 50_000]))}`;
    case 7: {
      const keys = Array.from({ length: rng.pick([100, 20_000]) }, (_, i) => `k${i}: ${i}`).join('\n');
      return `${text}\n${keys}\n`;
    }
    default:
      return text + '\n' + 'x'.repeat(rng.pick([10, 300_000]));
  }
}

/** Byte-level mutations of a binary file. */
export function mutateBytes(bytes: Uint8Array, rng: Rng): Uint8Array {
  const b = Uint8Array.from(bytes);
  switch (rng.int(4)) {
    case 0:
      for (let n = 1 + rng.int(8); n > 0; n--) b[rng.int(b.length)] = rng.int(256);
      return b;
    case 1:
      return b.subarray(0, rng.int(b.length + 1));
    case 2: {
      // Header length field: off by a little, or absurd.
      const dv = new DataView(b.buffer);
      const n = Number(dv.getBigUint64(0, true));
      dv.setBigUint64(0, BigInt(rng.pick([0, n - 1, n + 1, n + 8, 2 ** 40, 99_999_999])), true);
      return b;
    }
    default: {
      const out = new Uint8Array(b.length + 64);
      out.set(b);
      return out;
    }
  }
}
