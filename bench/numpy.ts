// The NumPy yardsticks of the merge and round benchmarks, run as child processes of /usr/bin/python3
// in the same run as our figures. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the child's
// environment (some machines pin an older kernel through them), so OpenBLAS picks its kernel for this
// CPU as a NumPy user's would; the kernel that ran is reported through threadpoolctl when it is there.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const PYTHON = '/usr/bin/python3';

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}

/** NumPy's version and BLAS kernel here, or null when /usr/bin/python3 has no NumPy. */
export function numpyInfo(): string | null {
  if (!existsSync(PYTHON)) return null;
  const probe = [
    'import numpy',
    'try:',
    '  import threadpoolctl',
    "  b = [f\"{i['internal_api']} {i['version']} {i['architecture']} kernel, {i['num_threads']} threads\" for i in threadpoolctl.threadpool_info()]",
    "  print(f'numpy {numpy.__version__}, ' + ('; '.join(b) or 'no BLAS found'))",
    'except ImportError:',
    "  print(f'numpy {numpy.__version__}, BLAS kernel unknown (no threadpoolctl)')",
  ].join('\n');
  const r = spawnSync(PYTHON, ['-c', probe], { encoding: 'utf8', env: childEnv() });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** Runs a Python script with NumPy; returns its stdout, or throws with its stderr. */
export function runNumpy(script: string, args: string[]): string {
  const r = spawnSync(PYTHON, [script, ...args], { encoding: 'utf8', env: childEnv(), maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${script} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

/** Peak RSS of this process so far, MiB (threads included). */
export function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}
