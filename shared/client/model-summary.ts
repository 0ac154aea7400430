// The base model's shape for the coordinator's placement: config.json and the stored size of the weights,
// read from the headers (no tensor is read). A path the client cannot read (a directory only the workers
// have) gives no summary: the coordinator then places by device count and each runner plans for itself.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { storedWeightBytes } from '../formats/hf-stored.ts';
import type { ModelSummary } from '../gen/chorus/v1/jobs.ts';

export async function modelSummary(dir: string): Promise<ModelSummary | undefined> {
  try {
    const configJson = await readFile(join(dir, 'config.json'), 'utf8');
    return { configJson, weightBytes: await storedWeightBytes(dir) };
  } catch {
    return undefined;
  }
}
