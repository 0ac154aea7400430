// Hugging Face model directories (Llama family): config.json plus weights in model.safetensors or
// sharded with model.safetensors.index.json. Tensors keep HF names and are upcast to Float32.
// Parsing config.json into a typed config belongs to shared/model/config.ts: here it stays raw JSON.

import { checkFinite } from '../lora/check.ts';
import { parseJsonText } from './json-keys.ts';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChorusError } from '../errors.ts';
import { DTYPE_SIZE } from './dtypes.ts';
import { SafetensorsFile, numelOf, tensorToFloat32, type Dtype } from './safetensors.ts';
import { writeSafetensorsFile, type TensorInput } from './safetensors-write.ts';

export interface HfTensor {
  shape: number[];
  data: Float32Array;
}
export type HfTensors = Map<string, HfTensor>;
export type HfConfig = Record<string, unknown>;

export const SINGLE_WEIGHTS = 'model.safetensors';
export const WEIGHTS_INDEX = 'model.safetensors.index.json';
const EMBED_NAME = 'model.embed_tokens.weight';
const LM_HEAD_NAME = 'lm_head.weight';

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ChorusError(code === 'ENOENT' ? `${path}: ${what} not found` : `${path}: cannot read ${what} (${code})`);
  }
  return parseJsonText(text, `${path}: ${what}`, MAX_JSON_DEPTH);
}

export async function readHfConfig(dir: string): Promise<HfConfig> {
  const path = join(dir, 'config.json');
  const raw = await readJson(path, 'model config');
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new ChorusError(`${path}: must be a JSON object`);
  return raw as HfConfig;
}

/**
 * Whether lm_head shares the embedding matrix. HF's base PretrainedConfig defaults to true, but
 * LlamaConfig (and this project's models) default to false, so absent means untied.
 */
function isTiedConfig(config: HfConfig): boolean {
  return config.tie_word_embeddings === true;
}

/**
 * The tying rule: with tie_word_embeddings the output projection IS the embedding (HF ties the
 * parameters after loading, ignoring any stored lm_head); without it lm_head.weight must exist.
 */
export function resolveLmHead(config: HfConfig, tensors: HfTensors, source = 'model'): HfTensor {
  const name = isTiedConfig(config) ? EMBED_NAME : LM_HEAD_NAME;
  const t = tensors.get(name);
  if (!t) {
    const why = isTiedConfig(config)
      ? ' (tie_word_embeddings is true, so lm_head is the embedding)'
      : ' (tie_word_embeddings is false)';
    throw new ChorusError(`${source}: missing tensor "${name}"${why}`);
  }
  return t;
}

/** Where each tensor lives: tensor name → safetensors file path. */
export async function locateWeights(dir: string): Promise<Map<string, string>> {
  const single = join(dir, SINGLE_WEIGHTS);
  const index = join(dir, WEIGHTS_INDEX);
  // transformers looks for the single file first, then the index.
  if (await exists(single)) {
    const f = await SafetensorsFile.open(single);
    try {
      return new Map(f.names.map((n) => [n, single]));
    } finally {
      await f.close();
    }
  }
  if (await exists(index)) {
    const raw = (await readJson(index, 'weights index')) as { weight_map?: unknown };
    const wm = raw?.weight_map;
    if (wm === null || typeof wm !== 'object' || Array.isArray(wm)) {
      throw new ChorusError(`${index}: "weight_map" must be an object of tensor name → file name`);
    }
    const map = new Map<string, string>();
    for (const [name, file] of Object.entries(wm as Record<string, unknown>)) {
      if (typeof file !== 'string' || file.includes('/') || file.includes('\\')) {
        throw new ChorusError(
          `${index}: "weight_map"."${name}" must be a file name in the model directory (got ${JSON.stringify(file)})`,
        );
      }
      map.set(name, join(dir, file));
    }
    return map;
  }
  for (const other of ['pytorch_model.bin', 'pytorch_model.bin.index.json']) {
    if (await exists(join(dir, other))) {
      throw new ChorusError(
        `${dir}: found ${other}, but only safetensors weights are supported (convert the model to safetensors)`,
      );
    }
  }
  throw new ChorusError(`${dir}: no ${SINGLE_WEIGHTS} or ${WEIGHTS_INDEX} found`);
}

/** config.json and friends nest a few levels (rope_scaling, quantization_config). */
const MAX_JSON_DEPTH = 64;

export interface ReadHfOptions {
  /** Only load tensors for which this returns true (e.g. skip lm_head when tied). */
  filter?: (name: string) => boolean;
}

/** Reads every tensor (upcast to Float32) of a HF model directory, shard by shard. */
export async function readHfModelDir(
  dir: string,
  opts: ReadHfOptions = {},
): Promise<{ config: HfConfig; tensors: HfTensors }> {
  const config = await readHfConfig(dir);
  const where = await locateWeights(dir);
  const byFile = new Map<string, string[]>();
  for (const [name, file] of where) {
    if (opts.filter && !opts.filter(name)) continue;
    const list = byFile.get(file) ?? [];
    list.push(name);
    byFile.set(file, list);
  }
  const tensors: HfTensors = new Map();
  for (const [file, names] of byFile) {
    if (!(await exists(file))) {
      throw new ChorusError(`${join(dir, WEIGHTS_INDEX)}: shard ${file} (holding "${names[0]}") does not exist`);
    }
    const f = await SafetensorsFile.open(file);
    try {
      for (const name of names) {
        if (!f.header.tensors.has(name)) {
          throw new ChorusError(`${file}: missing tensor "${name}" (the weights index says it is in this shard)`);
        }
        const view = await f.view(name);
        const data = tensorToFloat32(view);
        // One NaN in a base weight turns every loss into NaN: refuse it here, by name.
        checkFinite(data, name, file);
        tensors.set(name, { shape: view.shape, data });
      }
    } finally {
      await f.close();
    }
  }
  return { config, tensors };
}

/** HF names of every weight a Llama model with `numLayers` layers needs. */
export function llamaTensorNames(numLayers: number, tied: boolean): string[] {
  const names = [EMBED_NAME];
  for (let i = 0; i < numLayers; i++) {
    const p = `model.layers.${i}`;
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) names.push(`${p}.self_attn.${m}.weight`);
    for (const m of ['gate_proj', 'up_proj', 'down_proj']) names.push(`${p}.mlp.${m}.weight`);
    names.push(`${p}.input_layernorm.weight`, `${p}.post_attention_layernorm.weight`);
  }
  names.push('model.norm.weight');
  if (!tied) names.push(LM_HEAD_NAME);
  return names;
}

/** Throws naming every missing Llama tensor (the list is what a user needs to fix a bad export). */
export function checkLlamaTensors(config: HfConfig, tensors: HfTensors, source: string): void {
  const layers = config.num_hidden_layers;
  if (typeof layers !== 'number' || !Number.isInteger(layers) || layers < 0) {
    throw new ChorusError(`${source}: config.json "num_hidden_layers" must be a non-negative integer`);
  }
  const missing = llamaTensorNames(layers, isTiedConfig(config)).filter((n) => !tensors.has(n));
  if (missing.length > 0) {
    const shown = missing
      .slice(0, 8)
      .map((n) => `"${n}"`)
      .join(', ');
    throw new ChorusError(`${source}: missing ${missing.length} tensor(s): ${shown}${missing.length > 8 ? ', …' : ''}`);
  }
}

/** A tensor to write: its values, or a function that makes them when the writer reaches it (one tensor in memory at a time). */
export interface HfTensorSource {
  shape: number[];
  data: Float32Array | (() => Float32Array);
}

export interface WriteHfOptions {
  /** Split into shards of at most this many bytes (one tensor larger than that gets its own shard). */
  shardBytes?: number;
  /** On-disk dtype of the weights (default F32). */
  dtype?: Extract<Dtype, 'F32' | 'F16' | 'BF16'>;
}

/**
 * Writes config.json and the weights (single file, or shards + index). With tie_word_embeddings
 * lm_head.weight is not stored, as transformers' save_pretrained does for tied parameters.
 * Stale weight files from an earlier write are removed first: a leftover model.safetensors would
 * otherwise shadow a new sharded index.
 */
export async function writeHfModelDir(
  dir: string,
  config: HfConfig,
  tensors: Map<string, HfTensorSource>,
  opts: WriteHfOptions = {},
): Promise<void> {
  const dtype = opts.dtype ?? 'F32';
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(dir)) {
    if (name === SINGLE_WEIGHTS || name === WEIGHTS_INDEX || /^model-\d+-of-\d+\.safetensors$/.test(name)) {
      await rm(join(dir, name), { force: true });
    }
  }
  const entries = [...tensors.entries()].filter(([name]) => !(isTiedConfig(config) && name === LM_HEAD_NAME));
  const valuesOf = (name: string, t: HfTensorSource) => {
    const data = typeof t.data === 'function' ? t.data() : t.data;
    if (data.length !== numelOf(t.shape)) {
      throw new ChorusError(
        `writeHfModelDir: tensor "${name}" has shape [${t.shape.join(', ')}] but ${data.length} values`,
      );
    }
    return data;
  };
  for (const [name, t] of entries) if (typeof t.data !== 'function') valuesOf(name, t);
  const sizeOf = (t: HfTensorSource) => numelOf(t.shape) * DTYPE_SIZE[dtype];
  const shards: Array<Array<[string, HfTensorSource]>> = [[]];
  let current = 0;
  for (const e of entries) {
    const s = sizeOf(e[1]);
    if (opts.shardBytes !== undefined && current > 0 && current + s > opts.shardBytes) {
      shards.push([]);
      current = 0;
    }
    shards[shards.length - 1].push(e);
    current += s;
  }
  const input = (list: Array<[string, HfTensorSource]>) =>
    new Map<string, TensorInput>(
      list.map(([name, t]) => [name, { dtype, shape: t.shape, data: () => valuesOf(name, t) }]),
    );

  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  if (shards.length === 1) {
    await writeSafetensorsFile(join(dir, SINGLE_WEIGHTS), input(shards[0]), { format: 'pt' });
    return;
  }
  const total = String(shards.length).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (let i = 0; i < shards.length; i++) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${total}.safetensors`;
    await writeSafetensorsFile(join(dir, file), input(shards[i]), { format: 'pt' });
    for (const [name, t] of shards[i]) {
      weightMap[name] = file;
      totalSize += sizeOf(t);
    }
  }
  const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
  await writeFile(join(dir, WEIGHTS_INDEX), JSON.stringify(index, null, 2) + '\n');
}
