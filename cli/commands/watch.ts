// `chorus watch <id>`: the job's events from the first, live until it ends.
import type { Command } from 'commander';
import { clientFrom, clientOptions } from './client-options.ts';
import type { ChorusEvent } from '../../shared/client/index.ts';

export function formatEvent(ev: ChorusEvent): string {
  const t = new Date(ev.timeMs).toISOString().slice(11, 23);
  const d = ev.data as Record<string, unknown>;
  switch (ev.type) {
    case 'job.state':
      return `${t} job ${ev.data.state}${ev.data.reason ? `: ${ev.data.reason}` : ''}`;
    case 'metrics':
      return `${t} ${ev.data.task} r${ev.data.replica} step ${ev.data.step}/${ev.data.totalSteps} loss ${ev.data.loss.toFixed(4)} lr ${ev.data.lr.toExponential(2)} p ${ev.data.p.toFixed(2)} ${Math.round(ev.data.tokensPerSec)} tok/s layers [${ev.data.activeLayers.join(',')}]`;
    case 'shard.assigned':
      return `${t} ${ev.data.shardId} → ${ev.data.workerName} ${ev.data.device}${ev.data.attempt > 1 ? ` (attempt ${ev.data.attempt}, from step ${ev.data.resumeStep})` : ''}`;
    default:
      return `${t} ${ev.type} ${JSON.stringify(d)}`;
  }
}

export function register(program: Command): void {
  clientOptions(program.command('watch'))
    .description("follow a job's events (replayed from its first event)")
    .argument('<id>', 'job id')
    .option('--json', 'one JSON event per line')
    .action(async (id: string, o) => {
      const client = clientFrom(o);
      try {
        for await (const ev of client.watch(id)) console.log(o.json ? JSON.stringify(ev) : formatEvent(ev));
      } finally {
        client.close();
      }
    });
}
