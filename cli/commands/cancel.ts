// `chorus cancel <id>`
import type { Command } from 'commander';
import { clientFrom, clientOptions } from './client-options.ts';

export function register(program: Command): void {
  clientOptions(program.command('cancel'))
    .description('cancel a job')
    .argument('<id>', 'job id')
    .option('--reason <text>', 'reason recorded with the job', 'cancelled by user')
    .action(async (id: string, o) => {
      const client = clientFrom(o);
      try {
        const j = await client.cancel(id, o.reason);
        console.log(`${j.id} ${j.state}${j.reason ? `: ${j.reason}` : ''}`);
      } finally {
        client.close();
      }
    });
}
