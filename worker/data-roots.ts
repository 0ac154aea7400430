// Where a worker may read job inputs from. A job's spec names paths on the worker's disk, and the
// client that wrote it is not the worker's operator: without a limit any client could make a worker
// read (and, through error messages, reveal) any file it can open. The operator lists the allowed
// roots (`--data-root`, repeatable; default: the working directory); the upload cache is always
// allowed. Symbolic links are followed before the check, so a link inside a root cannot point out.
import { realpathSync } from 'node:fs';
import { dirname, basename, join, resolve, sep } from 'node:path';
import { ChorusError } from '../shared/errors.ts';

export class DataRoots {
  private readonly roots: string[];

  constructor(roots: string[]) {
    this.roots = [...new Set(roots.map((r) => real(resolve(r))))];
  }

  /** The path if it lies under a root; otherwise an error naming the field (and not the roots). */
  check(field: string, path: string): string {
    const abs = resolve(path);
    const target = real(abs);
    if (this.roots.some((r) => target === r || target.startsWith(r.endsWith(sep) ? r : r + sep))) return abs;
    throw new ChorusError(
      `${field}: ${path} is outside the directories this worker reads job inputs from (its --data-root); upload the input with \`chorus submit --upload\` or ask the worker's operator`,
    );
  }

  list(): string[] {
    return [...this.roots];
  }
}

/** The real path of `p`; for a path that does not exist yet, its nearest existing parent's real path + the rest. */
function real(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    const parent = dirname(p);
    return parent === p ? p : join(real(parent), basename(p));
  }
}
