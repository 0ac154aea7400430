// `chorus job <id>`: a job's state, shards and artifacts.
import type { Command } from 'commander';
import { clientFrom, clientOptions } from './client-options.ts';

export function register(program: Command): void {
  clientOptions(program.command('job'))
    .description('show one job')
    .argument('<id>', 'job id')
    .option('--json', 'print JSON')
    .action(async (id: string, o) => {
      const client = clientFrom(o);
      try {
        const j = await client.get(id);
        if (o.json) {
          console.log(JSON.stringify(j, null, 2));
          return;
        }
        console.log(`job ${j.id}  ${j.name}\nstate: ${j.state}${j.reason ? ` (${j.reason})` : ''}`);
        console.log(`created ${new Date(j.createdMs).toISOString()}, updated ${new Date(j.updatedMs).toISOString()}`);
        for (const s of j.shards) {
          console.log(
            `  ${s.id}  ${s.task} r${s.replica + 1}/${s.replicas}  ${s.state.padEnd(9)} step ${s.step}/${s.totalSteps}  loss ${s.loss ? s.loss.toFixed(4) : '-'}  ${s.workerId ? `${s.workerId} ${s.device}` : ''}${s.attempts > 1 ? `  attempts ${s.attempts}` : ''}`,
          );
        }
        if (j.artifacts.length) console.log(`artifacts:\n${j.artifacts.map((a) => `  ${a}`).join('\n')}`);
      } finally {
        client.close();
      }
    });
}
