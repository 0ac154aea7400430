// Entry point of the `chorus` command: each subcommand lives in cli/commands/<name>.ts and
// exports `register(program)`; this file only wires them together.
import { Command } from 'commander';
import { errorMessage } from '../shared/errors.ts';

const program = new Command('chorus')
  .description('Chorus: distributed LoRA adapter training with CoTo, over gRPC and NATS JetStream')
  .showHelpAfterError();

// One import per command module, in the order `chorus --help` lists them: the cluster's processes,
// the client commands, then the local tools.
const commandModules: Array<Promise<{ register(program: Command): void }>> = [
  import('./commands/coordinator.ts'),
  import('./commands/worker.ts'),
  import('./commands/submit.ts'),
  import('./commands/jobs.ts'),
  import('./commands/job.ts'),
  import('./commands/watch.ts'),
  import('./commands/cancel.ts'),
  import('./commands/result.ts'),
  import('./commands/workers.ts'),
  import('./commands/init-model.ts'),
  import('./commands/train.ts'),
  import('./commands/eval.ts'),
  import('./commands/export.ts'),
  import('./commands/merge.ts'),
  import('./commands/extract.ts'),
];

for (const mod of await Promise.all(commandModules)) mod.register(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // User-facing errors print one clear line; CHORUS_DEBUG=1 shows the stack.
  console.error(`chorus: ${errorMessage(err)}`);
  if (process.env.CHORUS_DEBUG) console.error(err);
  process.exit(1);
}
