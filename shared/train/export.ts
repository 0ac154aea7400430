// Folding a LoRA adapter into its base model: W' = W + s·B·A for every adapted module, computed
// in float64 (one output row at a time) and rounded once to float32, then written as a Hugging
// Face directory with the base's config and tokenizer files, so the result loads with no adapter.
import { copyFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ChorusError } from '../errors.ts';
import { readHfModelDir, writeHfModelDir, type HfTensors, SINGLE_WEIGHTS, WEIGHTS_INDEX } from '../formats/hf-model.ts';
import { readPeftAdapter } from '../formats/peft.ts';
import type { LoraAdapter } from '../lora/types.ts';

/** Adds s·B·A to each adapted module's weight in `tensors` (in place). */
export function foldAdapter(tensors: HfTensors, adapter: LoraAdapter, source = 'adapter'): void {
  for (const [path, m] of adapter.modules) {
    const name = `${path}.weight`;
    const w = tensors.get(name);
    if (!w) throw new ChorusError(`${source}: module ${path} has no base weight "${name}" in the model`);
    if (w.shape.length !== 2 || w.shape[0] !== m.outFeatures || w.shape[1] !== m.inFeatures) {
      throw new ChorusError(
        `${source}: module ${path} is ${m.outFeatures}×${m.inFeatures}, the base weight "${name}" is [${w.shape.join(', ')}]`,
      );
    }
    const { rank: r, inFeatures: n, outFeatures: out, scaling: s, a, b } = m;
    const row = new Float64Array(n);
    for (let o = 0; o < out; o++) {
      row.fill(0);
      for (let k = 0; k < r; k++) {
        const bk = b[o * r + k];
        if (bk === 0) continue;
        const aRow = k * n;
        for (let i = 0; i < n; i++) row[i] += bk * a[aRow + i];
      }
      const base = o * n;
      for (let i = 0; i < n; i++) w.data[base + i] = w.data[base + i] + s * row[i];
    }
  }
}

/** Files of a model directory that are not weights or config and travel with it (tokenizer etc.). */
const COPIED = /^(tokenizer.*|special_tokens_map\.json|generation_config\.json|vocab\.json|merges\.txt)$/;

export async function exportMerged(
  modelDir: string,
  adapterDir: string,
  outDir: string,
  opts: { dtype?: 'F32' | 'F16' | 'BF16' } = {},
): Promise<{ modules: number }> {
  const adapter = await readPeftAdapter(adapterDir);
  const { config, tensors } = await readHfModelDir(modelDir);
  foldAdapter(tensors, adapter, adapterDir);
  await writeHfModelDir(outDir, config, tensors, { dtype: opts.dtype });
  for (const f of await readdir(modelDir)) {
    if (COPIED.test(f) && f !== SINGLE_WEIGHTS && f !== WEIGHTS_INDEX)
      await copyFile(join(modelDir, f), join(outDir, f));
  }
  return { modules: adapter.modules.size };
}
