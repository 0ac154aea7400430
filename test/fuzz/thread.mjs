// The fuzz suite's worker thread: runs the cases it is given and reports each start and end, so the
// harness (harness.ts) can tell a hang (no end within the limit) from a slow machine. tsx is
// registered here: Node 20 worker threads do not inherit the main thread's loader hooks.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';
register();
const { TARGETS, CANARIES } = await import('./targets.ts');
const { seed, work } = workerData;
for (const { target: name, from, to } of work) {
  const target = TARGETS[name] ?? CANARIES[name];
  for (let i = from; i < to; i++) {
    const input = target.make(seed, i);
    parentPort.postMessage({ kind: 'start', target: name, i });
    let outcome;
    // CPU time, not wall time, is what a case costs: the machine may be shared. The main thread
    // idles meanwhile, so the process's CPU time is this thread's.
    const cpu0 = process.cpuUsage();
    try {
      outcome = target.run(input);
    } catch (err) {
      outcome = `FAIL ${err instanceof Error ? err.message : String(err)}`.slice(0, 600);
    }
    const cpu = process.cpuUsage(cpu0);
    parentPort.postMessage({ kind: 'done', target: name, i, outcome, cpuMs: (cpu.user + cpu.system) / 1000 });
  }
}
parentPort.postMessage({ kind: 'end' });
