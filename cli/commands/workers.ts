// `chorus workers`: the workers the coordinator knows and what runs on them.
import type { Command } from 'commander';
import { clientFrom, clientOptions } from './client-options.ts';

export function register(program: Command): void {
  clientOptions(program.command('workers'))
    .description('list workers and their devices')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const client = clientFrom(o);
      try {
        const ws = await client.workers();
        if (o.json) {
          console.log(JSON.stringify(ws, null, 2));
          return;
        }
        if (ws.length === 0) console.log('no workers');
        for (const w of ws) {
          const ago = ((Date.now() - w.lastHeartbeatMs) / 1000).toFixed(1);
          console.log(
            `${w.name} (${w.id})  ${w.state}  devices: ${w.devices.map((d) => (d.memoryBytes > 0 ? `${d.id} (${(d.memoryBytes / 1024 ** 3).toFixed(1)} GiB)` : d.id)).join(', ')}  busy: ${w.shards.length ? w.shards.join(', ') : '-'}  heartbeat ${ago}s ago`,
          );
        }
      } finally {
        client.close();
      }
    });
}
