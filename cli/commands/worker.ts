// `chorus worker`: the node agent of one machine.
import { hostname } from 'node:os';
import type { Command } from 'commander';
import { clientTlsFiles } from '../../shared/client/tls.ts';
import { WorkerAgent } from '../../worker/agent.ts';
import { parseDevices } from '../../worker/devices.ts';
import { parseByteSize } from './flags.ts';

export function register(program: Command): void {
  program
    .command('worker')
    .description('run a worker node: registers its devices with the coordinator and trains the shards it is given')
    .option('--coordinator <addr>', 'coordinator host:port (default CHORUS_COORDINATOR or 127.0.0.1:7070)')
    .option('--devices <spec>', 'auto (GPUs via nvidia-smi, else one CPU slot) | cpu:N | gpu:0,1', 'auto')
    .option(
      '--memory <size>',
      "memory a shard may use on each device, e.g. 8GiB (default: a GPU's own memory, a CPU slot's share of the machine)",
    )
    .option('--name <name>', 'name shown in listings', hostname())
    .option('--token <token>', 'worker bearer token (default CHORUS_WORKER_TOKEN, then CHORUS_TOKEN)')
    .option('--backend <name>', 'tensor backend of the runners: tensorflow | wasm | cpu (default: best available)')
    .option('--cache-dir <dir>', 'cache of inputs uploaded with `submit --upload` (default ~/.cache/chorus)')
    .option(
      '--data-root <dir>',
      'read job inputs (base model, data) only under this directory; repeatable (default: the working directory; the cache is always allowed)',
      (dir: string, all: string[]) => [...all, dir],
      [] as string[],
    )
    .option('--tls-ca <file>', 'TLS: trust this CA for the coordinator certificate')
    .option('--tls-cert <file>', "mTLS: this worker's client certificate")
    .option('--tls-key <file>', 'mTLS: key of --tls-cert')
    .action(async (o) => {
      const devices = parseDevices(o.devices, parseByteSize(o.memory, '--memory'));
      const agent = new WorkerAgent({
        coordinator: o.coordinator ?? process.env.CHORUS_COORDINATOR ?? '127.0.0.1:7070',
        token: o.token ?? process.env.CHORUS_WORKER_TOKEN ?? process.env.CHORUS_TOKEN,
        tls: clientTlsFiles(o) ?? false,
        name: o.name,
        devices,
        backend: o.backend,
        cacheDir: o.cacheDir,
        dataRoots: o.dataRoot,
      });
      agent.start();
      await Promise.race([
        agent.fatal,
        new Promise<void>((resolve) => {
          process.once('SIGTERM', resolve);
          process.once('SIGINT', resolve);
        }),
      ]);
      console.error('worker: finishing the current step, checkpointing, leaving');
      await agent.stop();
      process.exit(0);
    });
}
