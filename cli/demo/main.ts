// `npm start`: the demo (see run.ts). One clear line on failure, no stack (CHORUS_DEBUG=1 shows it);
// Ctrl-C stops every process it started.
import { parseArgs } from 'node:util';
import { errorMessage } from '../../shared/errors.ts';
import { cleanup, runDemo } from './run.ts';
import { killAllSync } from './processes.ts';

const root = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
const { values } = parseArgs({
  options: {
    spec: { type: 'string', default: `${root}/demo/job.yaml` },
    runs: { type: 'string', default: 'runs' },
    steps: { type: 'string' },
    'dashboard-port': { type: 'string', default: '8080' },
    'no-dashboard': { type: 'boolean', default: false },
  },
});

let stopping: Promise<never> | null = null;
let interrupted = false;
/** Stops once: a failure that the shutdown itself causes (the watch stream closing) changes nothing. */
function stop(code: number, message?: string): Promise<never> {
  stopping ??= (async () => {
    if (message) process.stderr.write(`\n${message}\n`);
    try {
      await cleanup();
    } catch {
      killAllSync();
    }
    process.exit(code);
  })();
  return stopping;
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (interrupted) {
      // A second Ctrl-C: no more waiting.
      killAllSync();
      process.exit(130);
    }
    interrupted = true;
    void stop(130, `chorus demo: ${sig}, stopping the cluster…`);
  });
}
process.on('exit', killAllSync);

try {
  await runDemo({
    root,
    spec: values.spec!,
    runsDir: values.runs!,
    workers: 2,
    devicesPerWorker: 3,
    steps: values.steps ? Number(values.steps) : undefined,
    dashboardPort: values['no-dashboard'] ? null : Number(values['dashboard-port']),
    out: (line) => console.log(line),
  });
  await stop(0);
} catch (err) {
  if (stopping) await stopping;
  if (process.env.CHORUS_DEBUG) console.error(err);
  await stop(1, `chorus demo: ${errorMessage(err)}`);
}
