// Errors that users see. A ChorusError's message names what is wrong (file, line, field path);
// the CLI prints it without a stack trace.
export class ChorusError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ChorusError';
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** The store or another service the coordinator needs is down: the caller may retry (gRPC UNAVAILABLE). */
export class Unavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Unavailable';
  }
}

/**
 * `text` cut to at most `maxChars` characters, marked with how much was dropped. Cuts never split a
 * surrogate pair (a lone half is not valid UTF-8 on the wire).
 */
export function truncate(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  let end = maxChars;
  const c = text.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end--;
  return `${text.slice(0, end)}… (${text.length - end} more characters)`;
}

/**
 * A value for an error message: JSON-like, at most `maxChars` characters, and never deeper than a few
 * levels. JSON.stringify on a hostile value (10k levels of nesting) overflows the stack; this does not.
 */
export function describe(value: unknown, maxChars = 120): string {
  const out: string[] = [];
  let budget = maxChars + 1;
  const put = (s: string) => {
    if (budget <= 0) return;
    out.push(s.slice(0, budget));
    budget -= s.length;
  };
  const walk = (v: unknown, depth: number): void => {
    if (budget <= 0) return;
    if (v === null || typeof v !== 'object') {
      put(typeof v === 'string' ? JSON.stringify(v.length > budget ? v.slice(0, budget) : v) : String(v));
      return;
    }
    if (depth >= 3) {
      put(Array.isArray(v) ? '[…]' : '{…}');
      return;
    }
    if (Array.isArray(v)) {
      put('[');
      for (let i = 0; i < v.length && budget > 0; i++) {
        if (i > 0) put(', ');
        walk(v[i], depth + 1);
      }
      put(']');
      return;
    }
    put('{');
    let first = true;
    for (const k in v as Record<string, unknown>) {
      if (budget <= 0) break;
      if (!first) put(', ');
      first = false;
      put(`${JSON.stringify(k.length > budget ? k.slice(0, budget) : k)}: `);
      walk((v as Record<string, unknown>)[k], depth + 1);
    }
    put('}');
  };
  walk(value, 0);
  const s = out.join('');
  return s.length > maxChars ? `${s.slice(0, maxChars)}…` : s;
}
