// What a runner waits for from its agent while it trains: the gradient sum of a step (sync:
// gradients), the merged adapter of a round (sync: weights), or a stop. A message that arrives
// before the runner asks for it is kept until it does.
import type { GradSumMessage, HostToRunner, RoundMergedMessage } from './protocol.ts';

/** If a stop arrives while a replica waits for the others, give them this long before leaving. */
const STOP_GRACE_MS = 5000;

export class Inbox {
  private readonly waiting = new Map<string, (m: HostToRunner) => void>();
  private readonly early = new Map<string, HostToRunner>();
  stopReason: string | null = null;
  private onStop: (() => void) | null = null;

  deliver(msg: HostToRunner): void {
    if (msg.type === 'stop') {
      this.stopReason = msg.reason;
      this.onStop?.();
      return;
    }
    const key = msg.type === 'gradSum' ? `g${msg.step}` : msg.type === 'roundMerged' ? `r${msg.round}` : '';
    if (!key) return;
    const fn = this.waiting.get(key);
    if (fn) {
      this.waiting.delete(key);
      fn(msg);
    } else this.early.set(key, msg);
  }

  gradSum(step: number): Promise<GradSumMessage | null> {
    return this.wait(`g${step}`);
  }

  roundMerged(round: number): Promise<RoundMergedMessage | null> {
    return this.wait(`r${round}`);
  }

  /** Waits for the message `key`; resolves null when a stop came and the grace period ran out. */
  private wait<T extends HostToRunner>(key: string): Promise<T | null> {
    const got = this.early.get(key);
    if (got) {
      this.early.delete(key);
      return Promise.resolve(got as T);
    }
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      const arm = () => {
        timer ??= setTimeout(() => {
          this.waiting.delete(key);
          resolve(null);
        }, STOP_GRACE_MS);
      };
      this.waiting.set(key, (m) => {
        if (timer) clearTimeout(timer);
        resolve(m as T);
      });
      if (this.stopReason) arm();
      this.onStop = arm;
    });
  }
}
