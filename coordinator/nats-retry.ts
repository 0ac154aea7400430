// Retrying JetStream calls through the faults a NATS cluster has in normal life: the node holding
// the connection dies (the client reconnects to another), a stream's leader is being elected (no
// responders / timeouts / "cluster not available" for a few seconds). Without this, one publish or
// KV put that failed in that window was logged and dropped, and a job waiting on it never moved.
import { errorMessage } from '../shared/errors.ts';

/** How long one call keeps trying before its error is let through. */
const NATS_RETRY_WINDOW_MS = 60_000;

const TRANSIENT_CODES = new Set(['TIMEOUT', '503', 'DISCONNECT', 'CONNECTION_REFUSED', 'REQUEST_ERROR', '408']);
// JetStream API errors seen during a leader election or while a peer is down.
const TRANSIENT_TEXT =
  /timeout|timed out|no responders|not available|offline|leader|no suitable peers|disconnect|reconnect|connection (?:closed|refused|reset)|stale connection|insufficient resources/i;

/** Whether `err` is a fault that goes away by itself (vs. a bad request that fails again the same way). */
export function isTransientNatsError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
  return TRANSIENT_TEXT.test(errorMessage(err));
}

export interface NatsRetryOptions {
  /** Stop early (the connection was closed on purpose). */
  closed: () => boolean;
  log?: (line: string) => void;
  windowMs?: number;
}

/** Runs `fn` until it succeeds, fails with a non-transient error, or the retry window ends. */
export async function withNatsRetry<T>(what: string, fn: () => Promise<T>, opts: NatsRetryOptions): Promise<T> {
  const deadline = Date.now() + (opts.windowMs ?? NATS_RETRY_WINDOW_MS);
  let wait = 100;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (opts.closed() || !isTransientNatsError(err) || Date.now() + wait > deadline) throw err;
      if (attempt === 1 || attempt % 10 === 0)
        opts.log?.(`NATS: ${what} failed (${errorMessage(err)}); retrying (attempt ${attempt})`);
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(2000, wait * 2);
    }
  }
}
