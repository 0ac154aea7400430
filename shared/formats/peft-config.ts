// adapter_config.json → the LoRA settings and target rules that decide how an adapter's weights are
// read (peft.ts). PEFT's field names and defaults; features whose weights Chorus cannot represent
// are refused rather than read as a different model; values go through the one LoRA check
// (shared/lora/check.ts) and every regex key is compiled (and length-checked) up front.
import { ChorusError, describe } from '../errors.ts';
import { checkLoraConfig } from '../lora/check.ts';
import type { LoraConfig } from '../lora/types.ts';
import { checkPatternKeys, fullMatch, type TargetSpec } from './peft-patterns.ts';

/** The parts of adapter_config.json that decide how the weights are interpreted. */
export interface ParsedPeftConfig {
  config: LoraConfig;
  targets: TargetSpec;
}

function field<T>(
  raw: Record<string, unknown>,
  name: string,
  check: (v: unknown) => v is T,
  want: string,
  fallback: T,
  src: string,
): T {
  const v = raw[name];
  if (v === undefined) return fallback;
  if (!check(v)) throw new ChorusError(`${src}: "${name}" must be ${want} (got ${describe(v)})`);
  return v;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const isStrOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';
const isNameSpec = (v: unknown): v is string[] | string | null =>
  v === null || typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string'));
const isLayers = (v: unknown): v is number[] | number | null =>
  v === null ||
  (typeof v === 'number' && Number.isInteger(v)) ||
  (Array.isArray(v) && v.every((x) => Number.isInteger(x)));

function isPatternMap(check: (v: unknown) => boolean) {
  return (v: unknown): v is Record<string, number> =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.values(v as object).every(check);
}

export function parsePeftConfig(raw: unknown, src: string): ParsedPeftConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new ChorusError(`${src}: must be a JSON object`);
  const o = raw as Record<string, unknown>;
  if (o.peft_type !== 'LORA')
    throw new ChorusError(`${src}: "peft_type" must be "LORA" (got ${describe(o.peft_type)})`);
  // Features whose weights we cannot represent: refuse rather than load a different model.
  if (o.use_dora === true) throw new ChorusError(`${src}: "use_dora": true (DoRA) is not supported`);
  if (o.lora_bias === true) throw new ChorusError(`${src}: "lora_bias": true is not supported`);
  if (o.bias !== undefined && o.bias !== 'none')
    throw new ChorusError(`${src}: "bias": ${describe(o.bias)} is not supported (only "none")`);
  if (o.modules_to_save != null && !(Array.isArray(o.modules_to_save) && o.modules_to_save.length === 0)) {
    throw new ChorusError(
      `${src}: "modules_to_save" is not supported (fully trained extra modules); got ${describe(o.modules_to_save)}`,
    );
  }
  if (o.layer_replication != null) throw new ChorusError(`${src}: "layer_replication" is not supported`);

  // PEFT's LoraConfig defaults: r 8, lora_alpha 8, lora_dropout 0.
  const r = field(o, 'r', isPosInt, 'a positive integer', 8, src);
  const loraAlpha = field(o, 'lora_alpha', isNum, 'a number', 8, src);
  const loraDropout = field(o, 'lora_dropout', isNum, 'a number', 0, src);
  const useRslora = field(o, 'use_rslora', isBool, 'true or false', false, src);
  const base = field(o, 'base_model_name_or_path', isStrOrNull, 'a string or null', null, src);
  const rankPattern = field(o, 'rank_pattern', isPatternMap(isPosInt), 'an object of positive integers', {}, src);
  const alphaPattern = field(o, 'alpha_pattern', isPatternMap(isNum), 'an object of numbers', {}, src);
  const targetModules = field(o, 'target_modules', isNameSpec, 'a list of names or a regex string', null, src);
  const targets: TargetSpec = {
    targetModules,
    excludeModules: field(o, 'exclude_modules', isNameSpec, 'a list of names or a regex string', null, src),
    layersToTransform: field(o, 'layers_to_transform', isLayers, 'an integer or a list of integers', null, src),
    layersPattern: field(o, 'layers_pattern', isNameSpec, 'a string or a list of strings', null, src),
  };
  const config: LoraConfig = {
    r,
    loraAlpha,
    targetModules: Array.isArray(targetModules) ? [...targetModules] : [],
    loraDropout,
    useRslora,
    ...(base !== null ? { baseModelNameOrPath: base } : {}),
    ...(typeof targetModules === 'string' ? { targetModulesRegex: targetModules } : {}),
    rankPattern,
    alphaPattern,
  };
  // One check for every reader (merge and eval agree), then the patterns: each compiles, within length.
  checkLoraConfig(config, src);
  checkPatternKeys(rankPattern, `${src}: "rank_pattern"`);
  checkPatternKeys(alphaPattern, `${src}: "alpha_pattern"`);
  for (const [name, spec] of [
    ['target_modules', targetModules],
    ['exclude_modules', targets.excludeModules],
  ] as const) {
    if (typeof spec === 'string' && spec !== 'all-linear') fullMatch(spec, '', `${src}: "${name}"`);
  }
  return { config, targets };
}
