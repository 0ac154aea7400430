// Worker side of `submit --upload`: chorus-object:// URIs in a plan are fetched into a local cache
// (content-addressed: a file already there with the right digest is not fetched again) and the plan
// is rewritten to the local paths before the runner sees it.
import { sha256Hex } from '../shared/digest.ts';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { ChorusError } from '../shared/errors.ts';
import { OBJECT_SCHEME, type DirManifest } from '../shared/client/uploads.ts';
import type { ResolvedTask } from '../shared/job/types.ts';
import type { DataRoots } from './data-roots.ts';

type Fetch = (object: string) => Promise<Uint8Array>;

function hexOk(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

async function fetchVerified(fetch: Fetch, object: string, digest: string, dest: string): Promise<void> {
  if (existsSync(dest) && sha256Hex(readFileSync(dest)) === digest) return;
  const data = await fetch(object);
  if (sha256Hex(data) !== digest)
    throw new ChorusError(`object ${object}: content does not match its SHA-256 ${digest}`);
  mkdirSync(dirname(dest), { recursive: true });
  // Unique temporary name + rename: two runners fetching the same file never see half of it.
  const part = `${dest}.part-${process.pid}-${Math.random().toString(36).slice(2)}`;
  writeFileSync(part, data);
  renameSync(part, dest);
}

async function localPath(uri: string, cacheDir: string, fetch: Fetch): Promise<string> {
  if (!uri.startsWith(OBJECT_SCHEME)) return uri;
  const parts = uri.slice(OBJECT_SCHEME.length).split('/');
  const [kind, digest, name] = parts;
  if (!hexOk(digest ?? '') || parts.length > (kind === 'file' ? 3 : 2))
    throw new ChorusError(`${uri}: not a valid chorus object URI`);
  if (kind === 'file') {
    // One plain file name: "." or ".." would put the file at (or above) the digest's directory.
    const safe = (name || 'data').replace(/[^A-Za-z0-9_.-]/g, '_');
    if (/^\.+$/.test(safe)) throw new ChorusError(`${uri}: "${name}" is not a file name`);
    const dest = join(cacheDir, 'files', digest, safe);
    await fetchVerified(fetch, `uploads/blobs/${digest}`, digest, dest);
    return dest;
  }
  if (kind === 'dir') {
    const manifestBytes = await fetch(`uploads/dirs/${digest}.json`);
    if (sha256Hex(manifestBytes) !== digest) throw new ChorusError(`${uri}: manifest does not match its SHA-256`);
    const manifest = JSON.parse(new TextDecoder().decode(manifestBytes)) as DirManifest;
    const root = join(cacheDir, 'dirs', digest);
    for (const [rel, f] of Object.entries(manifest.files)) {
      const dest = normalize(join(root, rel));
      if (!dest.startsWith(root + '/') || !hexOk(f.sha256))
        throw new ChorusError(`${uri}: manifest entry ${rel} is not allowed`);
      await fetchVerified(fetch, f.object, f.sha256, dest);
    }
    return root;
  }
  throw new ChorusError(`${uri}: unknown object kind "${kind}"`);
}

/**
 * The task with every chorus-object:// input replaced by a cached local path; every other path
 * must lie under one of the worker's data roots.
 */
export async function materialiseTask(
  task: ResolvedTask,
  cacheDir: string,
  fetch: Fetch,
  roots: DataRoots,
): Promise<ResolvedTask> {
  const local = async (field: string, uri: string) =>
    uri.startsWith(OBJECT_SCHEME) ? localPath(uri, cacheDir, fetch) : roots.check(field, uri);
  return {
    ...task,
    baseModel: await local('base_model', task.baseModel),
    data: {
      train: await local('data.train', task.data.train),
      ...(task.data.eval ? { eval: await local('data.eval', task.data.eval) } : {}),
    },
  };
}
