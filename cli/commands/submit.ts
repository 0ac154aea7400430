// `chorus submit job.yaml [--wait]`
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ChorusError } from '../../shared/errors.ts';
import { clientFrom, clientOptions } from './client-options.ts';
import { loadJobSpec } from '../../shared/job/parse.ts';
import { formatEvent } from './watch.ts';
import { uploadSpecInputs } from '../../shared/client/uploads.ts';
import { modelSummary } from '../../shared/client/model-summary.ts';

export function register(program: Command): void {
  clientOptions(program.command('submit'))
    .description('submit a job spec (YAML/JSON); prints the job id')
    .argument('<spec>', 'job spec file')
    .option('--name <name>', 'job name shown in listings')
    .option('--wait', 'follow the job to its end; exit 0 only if it succeeds')
    .option('--upload', 'send the base model and data files with the job (workers need no shared filesystem)')
    .action(async (file: string, o) => {
      // Validated here first (errors name the field without a round trip), then sent with every
      // path made absolute: the coordinator and workers do not share our working directory.
      const spec = loadJobSpec(file);
      const client = clientFrom(o);
      try {
        // The model's shape from its directory here (before an upload renames it), so shards are placed by memory.
        const model = await modelSummary(spec.baseModel);
        const sent = o.upload ? await uploadSpecInputs(client, spec, (l) => console.error(l)) : spec;
        const id = await client.submitSpec(sent, o.name ?? '', model);
        console.log(id);
        if (o.wait) {
          const job = await client.wait(id, (ev) => console.error(formatEvent(ev)));
          if (job.state !== 'succeeded') throw new ChorusError(`job ${id} ${job.state}: ${job.reason}`);
          console.error(`job ${id} succeeded; download with: chorus result ${id} --out ${resolve('runs', id)}`);
        }
      } finally {
        client.close();
      }
    });
}
