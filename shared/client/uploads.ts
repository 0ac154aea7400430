// Sending a job's inputs with it: `chorus submit --upload` stores the base model directory and the
// data files in the coordinator's object store (content-addressed, so sending the same file twice
// writes one object) and rewrites the spec's paths to chorus-object:// URIs that workers fetch into
// their cache. Without it, paths must be readable on every worker.
import { sha256Hex } from '../digest.ts';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { ChorusError } from '../errors.ts';
import type { JobSpec } from '../job/types.ts';
import { mapInputPaths } from '../job/wire.ts';
import type { ChorusClient } from './index.ts';

export const OBJECT_SCHEME = 'chorus-object://';

/** A directory: a manifest object maps relative file names to content objects. */
export interface DirManifest {
  files: Record<string, { object: string; sha256: string; size: number }>;
}

const isObjectUri = (p: string) => p.startsWith(OBJECT_SCHEME);

async function uploadFile(
  client: ChorusClient,
  path: string,
): Promise<{ object: string; sha256: string; size: number }> {
  const data = readFileSync(path);
  const digest = sha256Hex(data);
  const object = `uploads/blobs/${digest}`;
  await client.uploadBlob(object, data);
  return { object, sha256: digest, size: data.length };
}

async function uploadDir(client: ChorusClient, dir: string, field: string, log: (s: string) => void): Promise<string> {
  const manifest: DirManifest = { files: {} };
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const full = join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else manifest.files[relative(dir, full)] = { object: '', sha256: '', size: 0 };
    }
  };
  walk(dir);
  if (Object.keys(manifest.files).length === 0) throw new ChorusError(`${field}: ${dir} is empty`);
  for (const rel of Object.keys(manifest.files)) {
    manifest.files[rel] = await uploadFile(client, join(dir, rel));
    log(`uploaded ${join(dir, rel)} (${manifest.files[rel].size} bytes)`);
  }
  const bytes = new TextEncoder().encode(JSON.stringify(manifest));
  const digest = sha256Hex(bytes);
  await client.uploadBlob(`uploads/dirs/${digest}.json`, bytes);
  return `${OBJECT_SCHEME}dir/${digest}`;
}

/** Uploads every local input of the spec; returns a copy whose paths are object URIs. */
export async function uploadSpecInputs(
  client: ChorusClient,
  spec: JobSpec,
  log: (s: string) => void = () => {},
): Promise<JobSpec> {
  const done = new Map<string, string>();
  return mapInputPaths(spec, async (p, { kind, field }) => {
    if (isObjectUri(p)) return p;
    let uri = done.get(p);
    if (uri) return uri;
    if (kind === 'model') {
      try {
        if (!statSync(p).isDirectory()) throw new Error('not a directory');
      } catch {
        throw new ChorusError(`${field}: ${p} is not a readable directory`);
      }
      uri = await uploadDir(client, p, field, log);
    } else {
      try {
        statSync(p);
      } catch {
        throw new ChorusError(`${field}: ${p} is not readable`);
      }
      const info = await uploadFile(client, p);
      log(`uploaded ${p} (${info.size} bytes)`);
      uri = `${OBJECT_SCHEME}file/${info.sha256}/${basename(p)}`;
    }
    done.set(p, uri);
    return uri;
  });
}
