// `chorus result <id> --out DIR`: PEFT directories per task (+ merged) and report.json.
import type { Command } from 'commander';
import { clientFrom, clientOptions } from './client-options.ts';

export function register(program: Command): void {
  clientOptions(program.command('result'))
    .description("download a finished job's adapters (PEFT directories) and report")
    .argument('<id>', 'job id')
    .requiredOption('--out <dir>', 'directory to write into')
    .action(async (id: string, o) => {
      const client = clientFrom(o);
      try {
        const files = await client.downloadResult(id, o.out);
        for (const f of files) console.log(f);
      } finally {
        client.close();
      }
    });
}
