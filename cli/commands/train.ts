// `chorus train job.yaml --out runs/a [--resume] [--backend …] [--task NAME] [--stop-at N]`:
// trains one task of a job spec in this process. Progress goes to stderr; the last line on stdout
// is a JSON summary. SIGINT/SIGTERM finish the current step, checkpoint and exit (a second signal
// exits at once).
import type { Command } from 'commander';
import { parsePositiveInt } from './flags.ts';
import { runLocalTraining, type EvalMetrics, type TrainMetrics } from '../../shared/train/run.ts';

interface TrainFlags {
  out: string;
  resume?: boolean;
  backend?: string;
  task?: string;
  stopAt?: string;
  quiet?: boolean;
}

function formatMetrics(m: TrainMetrics | EvalMetrics, total: number, layers: number): string {
  if (m.type === 'eval') {
    return `step ${m.step}/${total}  eval loss ${m.eval_loss.toFixed(4)}  ppl ${m.eval_perplexity.toFixed(2)}  acc ${m.eval_accuracy.toFixed(3)}`;
  }
  return (
    `step ${m.step}/${total}  loss ${m.loss.toFixed(4)}  lr ${m.lr.toExponential(2)}  p ${m.p.toFixed(2)}  ` +
    `layers ${m.active_layers.length}/${layers}  ${Math.round(m.tokens_per_s)} tok/s`
  );
}

export function register(program: Command): void {
  program
    .command('train')
    .description('train a LoRA adapter (with CoTo) for one task of a job spec, in this process')
    .argument('<spec>', 'job spec (YAML or JSON)')
    .requiredOption('--out <dir>', 'run directory: PEFT adapter, checkpoints/, metrics.jsonl')
    .option('--resume', 'continue from the latest checkpoint in --out')
    .option('--backend <name>', 'tensorflow | wasm | cpu (default: CHORUS_BACKEND, else the best that loads)')
    .option('--task <name>', 'which task of a multi-task spec to train')
    .option('--stop-at <step>', 'stop after this many steps with a checkpoint (continue later with --resume)')
    .option('--quiet', 'no progress lines on stderr')
    .action(async (spec: string, f: TrainFlags) => {
      const stopAtStep = parsePositiveInt(f.stopAt, '--stop-at');
      let stopRequested = false;
      const onSignal = (sig: NodeJS.Signals) => {
        if (stopRequested) process.exit(130);
        stopRequested = true;
        process.stderr.write(`chorus: ${sig}: finishing the current step, then checkpointing (again to quit now)\n`);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      let total = 0;
      let numLayers = 0;
      try {
        const result = await runLocalTraining({
          specPath: spec,
          outDir: f.out,
          resume: f.resume,
          backend: f.backend,
          task: f.task,
          stopAtStep,
          shouldStop: () => stopRequested,
          log: (line) => process.stderr.write(`chorus: ${line}\n`),
          onStart: (info) => {
            total = info.task.training.steps;
            numLayers = info.numLayers;
          },
          onMetrics: f.quiet ? undefined : (m) => process.stderr.write(`${formatMetrics(m, total, numLayers)}\n`),
        });
        process.stdout.write(
          JSON.stringify({
            out: f.out,
            task: result.task.name,
            backend: result.backend,
            steps: result.steps,
            total_steps: result.task.training.steps,
            stopped: result.stopped,
            tokens_per_s: Math.round(result.tokensPerSecond),
            layer_active_steps: result.activationCounts,
            ...(result.lastEval
              ? { eval_loss: result.lastEval.eval_loss, eval_accuracy: result.lastEval.eval_accuracy }
              : {}),
          }) + '\n',
        );
        if (result.stopped && stopRequested) process.exitCode = 130;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
