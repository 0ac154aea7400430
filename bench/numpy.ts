// The NumPy yardsticks of the merge and round benchmarks, run as child processes of /usr/bin/python3
// in the same run as our figures. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the child's
// environment (some machines pin an older kernel through them: this one pins Haswell on an AVX-512
// CPU), so OpenBLAS picks its kernel for this CPU as a NumPy user's would. Chorus's own measuring
// processes get the same environment (`sameBlasEnv`), so that both sides run the same kernel; each
// side reports the kernel that ran.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const PYTHON = '/usr/bin/python3';

/** This process's environment without the OpenBLAS kernel pins, for NumPy and for Chorus's measuring processes. */
export function sameBlasEnv(): NodeJS.ProcessEnv {
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
    '  import ctypes',
    '  core = "unknown"',
    "  for lib in {l.split()[-1] for l in open('/proc/self/maps') if 'openblas' in l}:",
    '    try:',
    '      f = ctypes.CDLL(lib).openblas_get_corename; f.restype = ctypes.c_char_p; core = f().decode(); break',
    '    except Exception: pass',
    "  print(f'numpy {numpy.__version__}, OpenBLAS {core} kernel')",
  ].join('\n');
  const r = spawnSync(PYTHON, ['-c', probe], { encoding: 'utf8', env: sameBlasEnv() });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** Runs a Python script with NumPy; returns its stdout, or throws with its stderr. */
export function runNumpy(script: string, args: string[]): string {
  const r = spawnSync(PYTHON, [script, ...args], { encoding: 'utf8', env: sameBlasEnv(), maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${script} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

/** Peak RSS of this process so far, MiB (threads included). */
export function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}
