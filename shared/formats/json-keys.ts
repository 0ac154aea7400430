// Checks on JSON text that JSON.parse does not make, each one linear pass:
// - duplicate keys: JSON.parse keeps the last silently; the safetensors reference implementation
//   rejects them (two tensors with one name would make the file ambiguous);
// - nesting depth: JSON.parse itself copes with 10^6 levels, but everything recursive after it
//   (JSON.stringify in an error message, a recursive walk) overflows the stack;
// - a byte-order mark, which JSON (RFC 8259) forbids and the readers refuse.
import { ChorusError } from '../errors.ts';
import { jsonSyntaxError } from '../json-error.ts';

/** Nesting deeper than `max` objects/arrays, in one pass over the text (strings skipped). */
function jsonDepthExceeds(text: string, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      i++;
      while (i < text.length && text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c ? 2 : 1;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/**
 * JSON.parse for files: no byte-order mark, nesting at most `maxDepth`, errors that name the
 * source and the position (never the content).
 */
export function parseJsonText(text: string, source: string, maxDepth: number): unknown {
  if (text.charCodeAt(0) === 0xfeff)
    throw new ChorusError(`${source}: starts with a byte-order mark (JSON forbids it)`);
  if (jsonDepthExceeds(text, maxDepth)) throw new ChorusError(`${source}: nested more than ${maxDepth} levels deep`);
  try {
    return JSON.parse(text);
  } catch (err) {
    // Where, never what: the file may not be the caller's to read.
    throw new ChorusError(`${source}: ${jsonSyntaxError(err)}`);
  }
}

/** The first key that appears twice in one object of already-valid JSON text. */
export function findDuplicateKey(text: string): { key: string; path: string } | null {
  const stack: Array<{ keys: Set<string> | null; path: string; lastKey: string }> = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      i++;
      while (i < n && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
      const top = stack[stack.length - 1];
      if (top && top.keys) {
        let j = i;
        while (j < n && (text[j] === ' ' || text[j] === '\t' || text[j] === '\n' || text[j] === '\r')) j++;
        if (text[j] === ':') {
          const key = JSON.parse(text.slice(start, i)) as string;
          if (top.keys.has(key)) return { key, path: top.path };
          top.keys.add(key);
          top.lastKey = key;
        }
      }
      continue;
    }
    if (c === '{' || c === '[') {
      const parent = stack[stack.length - 1];
      const path = parent ? (parent.path ? `${parent.path}.${parent.lastKey}` : parent.lastKey) : '';
      stack.push({ keys: c === '{' ? new Set() : null, path, lastKey: '' });
    } else if (c === '}' || c === ']') {
      stack.pop();
    }
    i++;
  }
  return null;
}
