// Spec text → plain value, in time linear in the text and with bounded memory and stack, whatever
// the text holds. The yaml package's own `uniqueKeys` check compares every key with every other key
// of a mapping (a 1 MiB spec of 96k keys blocked the coordinator for minutes), so duplicate keys are
// found here with one Set per mapping instead. Alias bombs, unresolved aliases and nesting that
// would overflow the stack become problems naming the line, never a thrown RangeError/ReferenceError.
import YAML, { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, type Node } from 'yaml';
import { MAX_SPEC_ALIASES, MAX_SPEC_BYTES, MAX_SPEC_DEPTH } from './limits.ts';

export type SpecText = { ok: true; value: unknown } | { ok: false; problems: string[] };

/** Parses YAML (or JSON, which YAML 1.2 reads) into a plain value, or the problems that stop it. */
export function readSpecText(text: string): SpecText {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_SPEC_BYTES) {
    return { ok: false, problems: [`(spec): ${bytes} bytes exceeds the ${MAX_SPEC_BYTES}-byte limit`] };
  }
  const flow = flowDepthProblem(text);
  if (flow) return { ok: false, problems: [flow] };
  const lc = new LineCounter();
  // prettyErrors quotes the source line in every error: on one 100 KB line with 10^5 errors that is
  // quadratic (11 s). Positions come from the line counter instead.
  const doc = YAML.parseDocument(text, { prettyErrors: false, uniqueKeys: false, lineCounter: lc });
  const at = (offset: number | undefined) => {
    if (offset === undefined) return '';
    const pos = lc.linePos(offset);
    return `line ${pos.line}, column ${pos.col}: `;
  };
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.slice(0, 10).map((e) => {
        // The parser catches its own stack overflow on deep nesting and reports it as a YAML error.
        const message = /call stack/i.test(e.message)
          ? `nested more than ${MAX_SPEC_DEPTH} levels deep`
          : e.message.split('\n')[0].slice(0, 200);
        return `${at(e.pos?.[0])}${message}`;
      }),
    };
  }
  const shape = checkTree(doc.contents, at);
  if (shape) return { ok: false, problems: [shape] };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_SPEC_ALIASES });
  } catch (err) {
    if (err instanceof RangeError) return { ok: false, problems: [`nested more than ${MAX_SPEC_DEPTH} levels deep`] };
    const msg = err instanceof Error ? err.message : String(err);
    if (/resource exhaustion/.test(msg)) {
      return { ok: false, problems: [`aliases expand past ${MAX_SPEC_ALIASES} nodes (an alias bomb?)`] };
    }
    return { ok: false, problems: [msg.slice(0, 200)] };
  }
  // Aliases can stack nodes deeper than the written text shows.
  if (depthOf(value) > MAX_SPEC_DEPTH) {
    return { ok: false, problems: [`nested more than ${MAX_SPEC_DEPTH} levels deep (through aliases)`] };
  }
  return { ok: true, value };
}

/**
 * Flow collections ([ and {) opened more than MAX_SPEC_DEPTH deep, found by one pass before the
 * parser sees them (it spends seconds on 50k unclosed brackets). Quoted strings and comments are
 * skipped; a plain scalar full of brackets may be counted, which only a spec nobody writes hits.
 */
function flowDepthProblem(text: string): string | null {
  let depth = 0;
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n') {
      line++;
      lineStart = i + 1;
    } else if (c === '"') {
      for (i++; i < text.length && text[i] !== '"' && text[i] !== '\n'; i++) if (text[i] === '\\') i++;
    } else if (c === "'") {
      for (i++; i < text.length && text[i] !== "'" && text[i] !== '\n'; i++);
    } else if (c === '#' && (i === 0 || text[i - 1] === ' ' || text[i - 1] === '\t' || text[i - 1] === '\n')) {
      while (i + 1 < text.length && text[i + 1] !== '\n') i++;
    } else if (c === '[' || c === '{') {
      if (++depth > MAX_SPEC_DEPTH) {
        return `line ${line}, column ${i - lineStart + 1}: nested more than ${MAX_SPEC_DEPTH} levels deep`;
      }
    } else if ((c === ']' || c === '}') && depth > 0) depth--;
  }
  return null;
}

/** Duplicate or non-scalar keys, unresolved aliases and nesting depth, in one iterative pass. */
function checkTree(root: unknown, at: (offset: number | undefined) => string): string | null {
  const anchors = new Set<string>();
  const stack: Array<{ node: unknown; depth: number }> = [{ node: root, depth: 0 }];
  // Anchors must be defined before use: visit in document order (push children reversed).
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!;
    if (node === null || node === undefined) continue;
    const n = node as Node;
    if (isAlias(n)) {
      if (!anchors.has(n.source))
        return `${at(n.range?.[0])}unresolved alias *${n.source} (no anchor &${n.source} before it)`;
      continue;
    }
    if (n.anchor) anchors.add(n.anchor);
    if (isScalar(n)) continue;
    if (depth >= MAX_SPEC_DEPTH) return `${at(n.range?.[0])}nested more than ${MAX_SPEC_DEPTH} levels deep`;
    if (isMap(n)) {
      const keys = new Set<string>();
      const children: unknown[] = [];
      for (const pair of n.items) {
        const k = pair.key as Node | null;
        if (!isScalar(k)) return `${at(k?.range?.[0] ?? n.range?.[0])}mapping keys must be plain strings`;
        const name = String(k.value);
        if (keys.has(name)) return `${at(k.range?.[0])}map keys must be unique ("${name.slice(0, 64)}" appears twice)`;
        keys.add(name);
        if (k.anchor) anchors.add(k.anchor);
        children.push(pair.value);
      }
      for (let i = children.length - 1; i >= 0; i--) stack.push({ node: children[i], depth: depth + 1 });
    } else if (isSeq(n)) {
      for (let i = n.items.length - 1; i >= 0; i--) {
        const item = n.items[i];
        stack.push({ node: isPair(item) ? item.value : item, depth: depth + 1 });
      }
    }
  }
  return null;
}

/** Nesting depth of a plain value, without recursion (shared subtrees are walked once per reference). */
function depthOf(value: unknown): number {
  let max = 0;
  let budget = 1_000_000;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d + 1 > max) max = d + 1;
    if (max > MAX_SPEC_DEPTH || --budget < 0) return Infinity;
    for (const child of Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}
