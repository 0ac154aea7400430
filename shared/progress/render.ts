// Terminal rendering of a job's event stream: on a TTY one cli-progress bar per shard (step, loss,
// CoTo p(t), tokens/s) with state changes logged above the bars; elsewhere (CI logs, pipes) plain
// lines — state changes at once, and each shard's progress at most once per `intervalMs` of event time.
import cliProgress from 'cli-progress';
import type { ChorusEvent } from '../nats/events.ts';
import { applyEvent, describeEvent, emptyJob, fmt, shardLabel, type JobView, type ShardView } from './state.ts';

export interface ProgressOptions {
  out?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Force bars (true) or plain lines (false); default: whether `out` is a TTY. */
  tty?: boolean;
  /** Plain mode: minimum event-time gap between two progress lines of one shard. */
  intervalMs?: number;
}

export interface ProgressRenderer {
  readonly job: JobView;
  handle(ev: ChorusEvent): void;
  /** Stops the bars (leaving their last state on screen) and prints each shard's final line in plain mode. */
  close(): void;
}

function shardLine(s: ShardView): string {
  const tps = s.tokensPerSec === null ? '' : ` ${Math.round(s.tokensPerSec)} tok/s`;
  return `${shardLabel(s)} step ${s.step}/${s.totalSteps || '?'} loss ${fmt(s.loss, 4)} p(t) ${fmt(s.p, 2)}${tps} [${s.status}${s.worker ? ` on ${s.worker}` : ''}]`;
}

export function createProgress(jobId: string, opts: ProgressOptions = {}): ProgressRenderer {
  const out = opts.out ?? process.stdout;
  const tty = opts.tty ?? Boolean(out.isTTY);
  return tty ? barRenderer(jobId, out) : plainRenderer(jobId, out, opts.intervalMs ?? 5000);
}

function plainRenderer(jobId: string, out: NodeJS.WritableStream, intervalMs: number): ProgressRenderer {
  const job = emptyJob(jobId);
  const lastPrinted = new Map<string, number>();
  const write = (line: string) => out.write(line + '\n');
  return {
    job,
    handle(ev) {
      applyEvent(job, ev);
      if (ev.jobId !== jobId && ev.type !== 'worker.state') return;
      const line = describeEvent(ev);
      if (line) write(line);
      if (ev.type === 'metrics') {
        const s = job.shards.get(ev.data.shardId)!;
        const last = lastPrinted.get(s.shardId);
        if (last === undefined || ev.timeMs - last >= intervalMs || s.step === s.totalSteps) {
          lastPrinted.set(s.shardId, ev.timeMs);
          write(shardLine(s));
        }
      }
    },
    close() {},
  };
}

function barRenderer(jobId: string, out: NodeJS.WritableStream): ProgressRenderer {
  const job = emptyJob(jobId);
  const multibar = new cliProgress.MultiBar(
    {
      stream: out,
      format: ' {label} |{bar}| {value}/{total} loss {loss} p(t) {p} {tps} {status}',
      barsize: 24,
      hideCursor: true,
      clearOnComplete: false,
      autopadding: true,
      fps: 8,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  const payload = (s: ShardView) => ({
    label: shardLabel(s).padEnd(12),
    loss: fmt(s.loss, 4),
    p: fmt(s.p, 2),
    tps: s.tokensPerSec === null ? '' : `${Math.round(s.tokensPerSec)} tok/s`,
    status: s.status === 'running' ? '' : s.status,
  });
  return {
    job,
    handle(ev) {
      applyEvent(job, ev);
      if (ev.jobId !== jobId && ev.type !== 'worker.state') return;
      const line = describeEvent(ev);
      if (line) multibar.log(line + '\n');
      const shardId = (ev.data as { shardId?: string }).shardId;
      const s = shardId ? job.shards.get(shardId) : undefined;
      if (!s) return;
      let bar = bars.get(s.shardId);
      if (!bar) {
        bar = multibar.create(Math.max(s.totalSteps, 1), s.step, payload(s));
        bars.set(s.shardId, bar);
      }
      bar.setTotal(Math.max(s.totalSteps, 1));
      bar.update(s.step, payload(s));
    },
    close() {
      // log() lines wait for the next redraw: draw once more so the last ones are not lost.
      multibar.update();
      multibar.stop();
    },
  };
}
