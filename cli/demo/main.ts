// `npm start`: the demo (see run.ts). One clear line on failure, no stack (CHORUS_DEBUG=1 shows it);
// Ctrl-C stops every process it started.
import { parseArgs } from 'node:util';
import { errorMessage } from '../../shared/errors.ts';
import { cleanup, runDemo } from './run.ts';
import { killAllSync } from './processes.ts';

const root = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
const USAGE = `usage: npm start [-- options]
  --steps N            train every task N steps instead of the spec's (a quick run)
  --spec FILE          job spec to run (default demo/job.yaml)
  --runs DIR           where runs/<job>/ goes (default runs)
  --dashboard-port N   dashboard port (default 8080, a free one if taken; 0 = any free port)
  --no-dashboard       no dashboard
NATS_URL picks the NATS server (default 127.0.0.1:4222); without one, a private nats-server is started.`;

let values: {
  spec?: string;
  runs?: string;
  steps?: string;
  'dashboard-port'?: string;
  'no-dashboard'?: boolean;
  help?: boolean;
};
try {
  ({ values } = parseArgs({
    options: {
      spec: { type: 'string', default: `${root}/demo/job.yaml` },
      runs: { type: 'string', default: 'runs' },
      steps: { type: 'string' },
      'dashboard-port': { type: 'string', default: '8080' },
      'no-dashboard': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
  if (values.steps !== undefined && !/^[1-9]\d*$/.test(values.steps))
    throw new Error(`--steps must be a positive integer, got '${values.steps}'`);
  if (!/^\d+$/.test(values['dashboard-port']!))
    throw new Error(`--dashboard-port must be a port number, got '${values['dashboard-port']}'`);
} catch (err) {
  console.error(`chorus demo: ${errorMessage(err)}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

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
