// `chorus jobs`: one line per job.
import type { Command } from 'commander';
import { clientFrom, clientOptions } from './client-options.ts';

export function register(program: Command): void {
  clientOptions(program.command('jobs'))
    .description('list jobs')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const client = clientFrom(o);
      try {
        const jobs = await client.list();
        if (o.json) {
          console.log(JSON.stringify(jobs, null, 2));
          return;
        }
        console.log(['ID'.padEnd(20), 'STATE'.padEnd(10), 'SHARDS'.padEnd(7), 'NAME'.padEnd(24), 'REASON'].join(' '));
        for (const j of jobs) {
          const done = j.shards.filter((s) => s.state === 'finished').length;
          console.log(
            [
              j.id.padEnd(20),
              j.state.padEnd(10),
              `${done}/${j.shards.length}`.padEnd(7),
              j.name.slice(0, 24).padEnd(24),
              j.reason,
            ].join(' '),
          );
        }
      } finally {
        client.close();
      }
    });
}
