// PEFT LoRA directories: adapter_model.safetensors + adapter_config.json, read and written with
// PEFT's own conventions so that `PeftModel.from_pretrained` loads what we write and we load what
// PEFT saves:
// - keys are `base_model.model.<module path>.lora_A.weight` [r, in] / `.lora_B.weight` [out, r];
//   PEFT strips the adapter name ("default") on save and re-inserts it on load, so a key that
//   still carries it would not load in PEFT either and is rejected here;
// - per-module rank/alpha come from rank_pattern/alpha_pattern via PEFT's get_pattern_key;
// - scaling = alpha / r, or alpha / √r with use_rslora;
// - F16/BF16/F32 tensors are accepted (upcast); adapter_model.bin (pickle) is not.

import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChorusError, describe } from '../errors.ts';
import { loraScaling, type LoraAdapter, type LoraConfig, type LoraModule } from '../lora/types.ts';
import { checkFinite, checkLoraConfig } from '../lora/check.ts';
import { parsePeftConfig, type ParsedPeftConfig } from './peft-config.ts';
import { parseJsonText } from './json-keys.ts';
import { checkPatternKeys, isTargetModule, lookupPattern } from './peft-patterns.ts';
import { parseSafetensors, readSafetensorsFile, tensorToFloat32, type TensorView } from './safetensors.ts';
import { serializeSafetensors, writeSafetensorsFile, type TensorInput } from './safetensors-write.ts';

const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
/** What PEFT saves adapters in; integer or 8-bit float factors are not an adapter. */
const ADAPTER_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];
/** adapter_config.json: a flat object whose values are at most lists or maps of scalars. */
const MAX_CONFIG_DEPTH = 16;
const ADAPTER_CONFIG = 'adapter_config.json';
const PEFT_KEY_PREFIX = 'base_model.model.';

function peftKey(modulePath: string, which: 'A' | 'B'): string {
  return `${PEFT_KEY_PREFIX}${modulePath}.lora_${which}.weight`;
}

// ---------------------------------------------------------------------------------------------
// Reading

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Groups PEFT keys into modules; every other key is an error that names it. */
function groupKeys(tensors: Map<string, TensorView>, src: string): Map<string, { a?: TensorView; b?: TensorView }> {
  const modules = new Map<string, { a?: TensorView; b?: TensorView }>();
  for (const [key, view] of tensors) {
    const m = /^(.*)\.lora_([AB])\.weight$/.exec(key);
    if (!m) {
      const named = /^(.*)\.lora_([AB])\.([^.]+)\.weight$/.exec(key);
      if (named) {
        throw new ChorusError(
          `${src}: key "${key}" carries the adapter name "${named[3]}"; PEFT saves keys without it ` +
            `("${named[1]}.lora_${named[2]}.weight") and would not load this file`,
        );
      }
      const kind = /lora_magnitude_vector/.test(key)
        ? ' (DoRA)'
        : /lora_embedding_/.test(key)
          ? ' (LoRA on embeddings)'
          : '';
      throw new ChorusError(
        `${src}: unsupported tensor "${key}"${kind}: only lora_A/lora_B weights of linear layers are supported`,
      );
    }
    if (!m[1].startsWith(PEFT_KEY_PREFIX)) {
      throw new ChorusError(
        `${src}: key "${key}" lacks the "${PEFT_KEY_PREFIX}" prefix PEFT writes (PEFT would not load it)`,
      );
    }
    const path = m[1].slice(PEFT_KEY_PREFIX.length);
    const entry = modules.get(path) ?? {};
    if (m[2] === 'A') entry.a = view;
    else entry.b = view;
    modules.set(path, entry);
  }
  return modules;
}

/** A module's factors as float32, after the rules for adapters: F32/F16/BF16 only, every value finite. */
function factorsOf(path: string, a: TensorView, b: TensorView, src: string): [Float32Array, Float32Array] {
  const out: Float32Array[] = [];
  for (const [which, view] of [
    ['A', a],
    ['B', b],
  ] as const) {
    const key = peftKey(path, which);
    if (!ADAPTER_DTYPES.includes(view.dtype)) {
      throw new ChorusError(
        `${src}: tensor ${describe(key, 200)} has dtype ${view.dtype}; adapters hold F32, F16 or BF16`,
      );
    }
    const values = tensorToFloat32(view);
    checkFinite(values, key, src);
    out.push(values);
  }
  return [out[0], out[1]];
}

/** Builds an adapter from a parsed config and the adapter_model.safetensors tensors. */
function adapterFromPeft(parsed: ParsedPeftConfig, tensors: Map<string, TensorView>, src: string): LoraAdapter {
  const { config, targets } = parsed;
  const modules = new Map<string, LoraModule>();
  const grouped = groupKeys(tensors, src);
  if (grouped.size === 0) throw new ChorusError(`${src}: no LoRA weights (no "…lora_A.weight" keys)`);
  const leafNames = new Set<string>();
  for (const [path, { a, b }] of [...grouped].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))) {
    if (!a || !b)
      throw new ChorusError(
        `${src}: module ${describe(path, 200)} has lora_${a ? 'A' : 'B'} but no lora_${a ? 'B' : 'A'}`,
      );
    if (a.shape.length !== 2 || b.shape.length !== 2) {
      throw new ChorusError(
        `${src}: module ${describe(path, 200)}: lora_A ${describe(a.shape)} and lora_B ${describe(b.shape)} must both be 2-D`,
      );
    }
    const [rank, inFeatures] = a.shape;
    const [outFeatures, rankB] = b.shape;
    if (rank !== rankB) {
      throw new ChorusError(
        `${src}: module ${describe(path, 200)}: mismatched ranks, lora_A is [${a.shape}] (rank ${rank}) but lora_B is [${b.shape}] (rank ${rankB})`,
      );
    }
    if (!isTargetModule(targets, path, src)) {
      throw new ChorusError(
        `${src}: module ${describe(path, 200)} is not matched by target_modules ${describe(targets.targetModules)} (PEFT would not load it)`,
      );
    }
    const r = lookupPattern(config.rankPattern, path, config.r, `${src}: "rank_pattern"`);
    if (rank !== r) {
      throw new ChorusError(
        `${src}: module ${describe(path, 200)} has rank ${rank} but the config gives it r = ${r} (check "r" and "rank_pattern")`,
      );
    }
    const alpha = lookupPattern(config.alphaPattern, path, config.loraAlpha, `${src}: "alpha_pattern"`);
    const [fa, fb] = factorsOf(path, a, b, src);
    modules.set(path, {
      a: fa,
      b: fb,
      rank,
      inFeatures,
      outFeatures,
      scaling: loraScaling(alpha, rank, config.useRslora),
    });
    leafNames.add(path.slice(path.lastIndexOf('.') + 1));
  }
  // A regex target_modules says nothing listable: report the module names it actually matched.
  if (config.targetModulesRegex !== undefined || config.targetModules.length === 0)
    config.targetModules = [...leafNames].sort();
  return { config, modules };
}

/** In-memory form (e.g. for the object store): the two files' contents. */
export function peftAdapterFromBytes(weights: Uint8Array, configJson: string, source = 'adapter'): LoraAdapter {
  const raw = parseJsonText(configJson, `${source}/${ADAPTER_CONFIG}`, MAX_CONFIG_DEPTH);
  const parsed = parsePeftConfig(raw, `${source}/${ADAPTER_CONFIG}`);
  const src = `${source}/${ADAPTER_WEIGHTS}`;
  return adapterFromPeft(parsed, parseSafetensors(weights, src).tensors, src);
}

export async function readPeftAdapter(dir: string): Promise<LoraAdapter> {
  const cfgPath = join(dir, ADAPTER_CONFIG);
  const weightsPath = join(dir, ADAPTER_WEIGHTS);
  let text: string;
  try {
    text = await readFile(cfgPath, 'utf8');
  } catch {
    throw new ChorusError(`${cfgPath}: adapter config not found`);
  }
  const raw = parseJsonText(text, cfgPath, MAX_CONFIG_DEPTH);
  const parsed = parsePeftConfig(raw, cfgPath);
  if (!(await exists(weightsPath))) {
    if (await exists(join(dir, 'adapter_model.bin'))) {
      throw new ChorusError(
        `${dir}: adapter_model.bin (pickle) is not supported; save the adapter with safetensors (PEFT's default, safe_serialization=True)`,
      );
    }
    throw new ChorusError(`${weightsPath}: adapter weights not found`);
  }
  const { tensors } = await readSafetensorsFile(weightsPath);
  return adapterFromPeft(parsed, tensors, weightsPath);
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Rounds away float noise (e.g. 16/√8·√8) so written alphas stay the integers users chose. */
function tidy(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - r) <= 1e-9 * Math.max(1, Math.abs(x)) ? r : x;
}

const close = (x: number, y: number) => Math.abs(x - y) <= 1e-6 * Math.max(1, Math.abs(x), Math.abs(y));

/**
 * The adapter_config.json object for an adapter. Modules whose rank or scaling differ from what
 * r / lora_alpha and the adapter's own patterns give get exact-path entries, placed first because
 * PEFT takes the first matching key.
 */
function peftConfigJson(adapter: LoraAdapter): Record<string, unknown> {
  const c = adapter.config;
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  const leaves: string[] = [...c.targetModules];
  for (const [path, m] of adapter.modules) {
    const r = lookupPattern(c.rankPattern, path, c.r, 'rank_pattern');
    if (m.rank !== r) rankPattern[path] = m.rank;
    const alphaNeeded = tidy(c.useRslora ? m.scaling * Math.sqrt(m.rank) : m.scaling * m.rank);
    const alpha = lookupPattern(c.alphaPattern, path, c.loraAlpha, 'alpha_pattern');
    if (!close(alpha, alphaNeeded)) alphaPattern[path] = alphaNeeded;
    const leaf = path.slice(path.lastIndexOf('.') + 1);
    if (!leaves.includes(leaf)) leaves.push(leaf);
  }
  return {
    alpha_pattern: withFallback(alphaPattern, c.alphaPattern),
    auto_mapping: null,
    base_model_name_or_path: c.baseModelNameOrPath ?? null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: c.loraAlpha,
    lora_dropout: c.loraDropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: c.r,
    rank_pattern: withFallback(rankPattern, c.rankPattern),
    revision: null,
    target_modules: c.targetModulesRegex ?? leaves,
    task_type: 'CAUSAL_LM',
    use_rslora: c.useRslora,
  };
}

/** `first`'s keys first (they must win PEFT's first-match lookup), then `rest`'s other keys. */
function withFallback(first: Record<string, number>, rest: Record<string, number> | undefined): Record<string, number> {
  const out = { ...first };
  for (const [k, v] of Object.entries(rest ?? {})) if (!(k in out)) out[k] = v;
  return out;
}

export interface WritePeftOptions {
  /** On-disk dtype (default F32). */
  dtype?: 'F32' | 'F16' | 'BF16';
}

function peftTensors(adapter: LoraAdapter, opts: WritePeftOptions): Map<string, TensorInput> {
  const dtype = opts.dtype ?? 'F32';
  const tensors = new Map<string, TensorInput>();
  const paths = [...adapter.modules.keys()].sort();
  for (const path of paths) {
    const m = adapter.modules.get(path)!;
    if (m.a.length !== m.rank * m.inFeatures || m.b.length !== m.outFeatures * m.rank) {
      throw new ChorusError(
        `writePeftAdapter: module ${describe(path, 200)} says rank ${m.rank}, in ${m.inFeatures}, out ${m.outFeatures} ` +
          `but A has ${m.a.length} values and B ${m.b.length}`,
      );
    }
    tensors.set(peftKey(path, 'A'), { dtype, shape: [m.rank, m.inFeatures], data: m.a });
    tensors.set(peftKey(path, 'B'), { dtype, shape: [m.outFeatures, m.rank], data: m.b });
  }
  return tensors;
}

/** The text of adapter_config.json for an adapter. */
export function peftConfigText(adapter: LoraAdapter): string {
  return JSON.stringify(peftConfigJson(adapter), null, 2) + '\n';
}

/** The two files' contents, as writePeftAdapter would write them. */
export function peftAdapterToBytes(
  adapter: LoraAdapter,
  opts: WritePeftOptions = {},
): { weights: Uint8Array; configJson: string } {
  return {
    weights: serializeSafetensors(peftTensors(adapter, opts), { format: 'pt' }),
    configJson: peftConfigText(adapter),
  };
}

export async function writePeftAdapter(dir: string, adapter: LoraAdapter, opts: WritePeftOptions = {}): Promise<void> {
  const tensors = peftTensors(adapter, opts);
  await mkdir(dir, { recursive: true });
  await writeSafetensorsFile(join(dir, ADAPTER_WEIGHTS), tensors, { format: 'pt' });
  await writeFile(join(dir, ADAPTER_CONFIG), peftConfigText(adapter));
}

// ---------------------------------------------------------------------------------------------
// Object-store form (the cluster): ONE blob that restores the exact in-memory adapter. It is a
// valid adapter_model.safetensors (PEFT keys, F32, metadata "format": "pt") whose metadata also
// carries the LoraConfig and each module's float64 scaling, so nothing is rounded through
// alpha = scaling·r and no rank_pattern/alpha_pattern entries are added to the config.

const OBJECT_CONFIG = 'chorus_config';
const OBJECT_SCALINGS = 'chorus_scalings';

export function adapterToObjectBytes(adapter: LoraAdapter): Uint8Array {
  const scalings: Record<string, number> = {};
  for (const path of [...adapter.modules.keys()].sort()) scalings[path] = adapter.modules.get(path)!.scaling;
  return serializeSafetensors(peftTensors(adapter, {}), {
    format: 'pt',
    [OBJECT_CONFIG]: JSON.stringify(adapter.config),
    [OBJECT_SCALINGS]: JSON.stringify(scalings),
  });
}

export function adapterFromObjectBytes(bytes: Uint8Array, source: string): LoraAdapter {
  const { tensors, metadata } = parseSafetensors(bytes, source);
  const configText = metadata[OBJECT_CONFIG];
  const scalingsText = metadata[OBJECT_SCALINGS];
  if (configText === undefined || scalingsText === undefined) {
    throw new ChorusError(`${source}: not a Chorus adapter object (no ${OBJECT_CONFIG} / ${OBJECT_SCALINGS} metadata)`);
  }
  const parse = (text: string, key: string): Record<string, unknown> => {
    const v = parseJsonText(text, `${source}: metadata "${key}"`, MAX_CONFIG_DEPTH);
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      throw new ChorusError(`${source}: metadata "${key}" must be a JSON object`);
    return v as Record<string, unknown>;
  };
  // These bytes may come from any worker-token holder: check the config as a PEFT file's would be.
  const config = parse(configText, OBJECT_CONFIG) as unknown as LoraConfig;
  checkLoraConfig(config, `${source}: metadata "${OBJECT_CONFIG}"`);
  if (config.rankPattern) checkPatternKeys(config.rankPattern, `${source}: "rankPattern"`);
  if (config.alphaPattern) checkPatternKeys(config.alphaPattern, `${source}: "alphaPattern"`);
  const scalings = parse(scalingsText, OBJECT_SCALINGS) as Record<string, number>;
  const grouped = groupKeys(tensors, source);
  const modules = new Map<string, LoraModule>();
  for (const [path, scaling] of Object.entries(scalings)) {
    const { a, b } = grouped.get(path) ?? {};
    if (!a || !b) throw new ChorusError(`${source}: module ${describe(path, 200)} lacks lora_A or lora_B`);
    if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== b.shape[1]) {
      throw new ChorusError(
        `${source}: module ${describe(path, 200)}: lora_A [${a.shape}] and lora_B [${b.shape}] are not [r, in] and [out, r]`,
      );
    }
    if (typeof scaling !== 'number' || !Number.isFinite(scaling))
      throw new ChorusError(`${source}: module ${describe(path, 200)} has scaling ${describe(scaling)}`);
    const [fa, fb] = factorsOf(path, a, b, source);
    modules.set(path, {
      a: fa,
      b: fb,
      rank: a.shape[0],
      inFeatures: a.shape[1],
      outFeatures: b.shape[0],
      scaling,
    });
  }
  if (modules.size !== grouped.size)
    throw new ChorusError(`${source}: ${grouped.size - modules.size} module(s) have weights but no scaling`);
  return { config, modules };
}
