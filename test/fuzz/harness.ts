// Runs fuzz targets in a worker thread under a watchdog: each case must use at most `caseMs` of CPU
// (2 s: "no hang"; CPU time, so a loaded machine does not fail cases), must end within `wallMs` of
// wall time (a true hang never ends), and the thread must stay within a heap of `heapMb` ("no
// memory blow-up"). A thread that overruns is terminated, the case named, and a new thread goes
// on from the next case.
// Results are counts per outcome and the failures with their seed and case number, so
// `npm run fuzz -- --seed S --from I --cases 1 --target T` replays one.
import { Worker } from 'node:worker_threads';

export interface FuzzOptions {
  targets: string[];
  seed: number;
  cases: number;
  /** First case number (replaying a failure). */
  from?: number;
  caseMs?: number;
  /** Wall-clock limit per case (default 10 × caseMs). */
  wallMs?: number;
  heapMb?: number;
}

export interface FuzzFailure {
  target: string;
  seed: number;
  case: number;
  why: string;
}

export interface FuzzReport {
  counts: Record<string, { accepted: number; refused: number }>;
  failures: FuzzFailure[];
}

interface Work {
  target: string;
  from: number;
  to: number;
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const report: FuzzReport = { counts: {}, failures: [] };
  const from = o.from ?? 0;
  let work: Work[] = o.targets.map((target) => ({ target, from, to: from + o.cases }));
  for (const t of o.targets) report.counts[t] = { accepted: 0, refused: 0 };
  while (work.length > 0) work = await runThread(work, o, report);
  return report;
}

/** Runs `work` in one thread; returns what is left after a case that killed the thread. */
function runThread(work: Work[], o: FuzzOptions, report: FuzzReport): Promise<Work[]> {
  const caseMs = o.caseMs ?? 2000;
  const wallMs = o.wallMs ?? 10 * caseMs;
  const heapMb = o.heapMb ?? 512;
  return new Promise((resolve) => {
    const worker = new Worker(new URL('./thread.mjs', import.meta.url), {
      workerData: { seed: o.seed, work },
      resourceLimits: { maxOldGenerationSizeMb: heapMb },
      stdout: true,
      stderr: true,
    });
    let current: { target: string; i: number } | null = null;
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    // What remains after the current case (the current one is reported as the failure).
    const rest = (): Work[] => {
      if (!current) return [];
      const k = work.findIndex((w) => w.target === current!.target);
      return [{ ...work[k], from: current.i + 1 }, ...work.slice(k + 1)].filter((w) => w.from < w.to);
    };
    const finish = (failure?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (failure && current)
        report.failures.push({ target: current.target, seed: o.seed, case: current.i, why: failure });
      else if (failure) report.failures.push({ target: work[0].target, seed: o.seed, case: -1, why: failure });
      const left = failure && current ? rest() : [];
      void worker.terminate().then(() => resolve(left));
    };
    worker.on(
      'message',
      (m: { kind: 'start' | 'done' | 'end'; target: string; i: number; outcome?: string; cpuMs?: number }) => {
        if (m.kind === 'end') return finish();
        if (m.kind === 'start') {
          // Loading the thread (tsx, the modules) is not a case: the clock starts with each case.
          current = { target: m.target, i: m.i };
          clearTimeout(timer);
          timer = setTimeout(() => finish(`hang: no result within ${wallMs} ms`), wallMs);
          return;
        }
        clearTimeout(timer);
        const outcome = m.outcome ?? '';
        const slow = m.cpuMs !== undefined && m.cpuMs > caseMs ? `slow: ${Math.round(m.cpuMs)} ms of CPU` : '';
        const ok = outcome === 'accepted' || outcome === 'refused';
        if (ok && !slow) report.counts[m.target][outcome]++;
        // A case that failed is reported by its failure, slow or not: slowness must not hide why.
        else if (!ok) {
          const why = outcome.replace(/^FAIL /, '') + (slow ? ` (also ${slow})` : '');
          report.failures.push({ target: m.target, seed: o.seed, case: m.i, why });
        } else report.failures.push({ target: m.target, seed: o.seed, case: m.i, why: slow });
      },
    );
    worker.on('error', (err: Error & { code?: string }) =>
      finish(
        err.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? `memory: the thread passed its ${heapMb} MB heap`
          : `thread error: ${err.message.slice(0, 300)}`,
      ),
    );
    worker.on('exit', () => finish(settled ? undefined : 'thread exited mid-run'));
  });
}

export function formatReport(r: FuzzReport): string {
  const lines = Object.entries(r.counts).map(
    ([t, c]) => `${t}: ${c.accepted} accepted, ${c.refused} refused with a clear error`,
  );
  for (const f of r.failures) lines.push(`FAIL ${f.target} seed ${f.seed} case ${f.case}: ${f.why}`);
  return lines.join('\n');
}
