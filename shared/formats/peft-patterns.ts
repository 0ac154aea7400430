// PEFT's module-name matching rules, reproduced so an adapter_config.json means here what it means
// in PEFT (peft/utils/other.py get_pattern_key, peft/tuners/tuners_utils.py
// check_target_module_exists). Pattern keys are Python regex fragments; JS RegExp accepts the
// subset used in practice once Python's named-group syntax (?P<…>) is translated.

import { ChorusError } from '../errors.ts';

export function pythonRegex(pattern: string, anchored: 'full' | 'start', field: string): RegExp {
  const js = pattern.replace(/\(\?P</g, '(?<').replace(/\(\?P=(\w+)\)/g, '\\k<$1>');
  try {
    return new RegExp(anchored === 'full' ? `^(?:${js})$` : `^${js}`);
  } catch (err) {
    throw new ChorusError(
      `${field}: invalid regular expression ${JSON.stringify(pattern)} (${(err as Error).message})`,
    );
  }
}

/**
 * PEFT's get_pattern_key: the first key (in file order) such that re.match(rf"(.*\.)?({key})$", module)
 * matches, i.e. the key matches a dot-separated suffix of the module path (or all of it).
 */
export function findPatternKey(patternKeys: Iterable<string>, modulePath: string, field: string): string | undefined {
  for (const key of patternKeys) {
    if (pythonRegex(`(.*\\.)?(${key})$`, 'start', `${field} key ${JSON.stringify(key)}`).test(modulePath)) return key;
  }
  return undefined;
}

export function lookupPattern(
  patterns: Record<string, number> | undefined,
  modulePath: string,
  fallback: number,
  field: string,
): number {
  if (!patterns) return fallback;
  const key = findPatternKey(Object.keys(patterns), modulePath, field);
  return key === undefined ? fallback : patterns[key];
}

export interface TargetSpec {
  targetModules: string[] | string | null;
  excludeModules?: string[] | string | null;
  layersToTransform?: number[] | number | null;
  layersPattern?: string[] | string | null;
}

function matchesNames(spec: string[] | string, modulePath: string, field: string): boolean {
  if (typeof spec === 'string') return pythonRegex(spec, 'full', field).test(modulePath);
  return spec.some((t) => modulePath === t || modulePath.endsWith(`.${t}`));
}

/** PEFT's check_target_module_exists for a LoRA config (the "all-linear" shorthand excludes lm_head). */
export function isTargetModule(spec: TargetSpec, modulePath: string, source: string): boolean {
  if (spec.excludeModules && matchesNames(spec.excludeModules, modulePath, `${source}: "exclude_modules"`))
    return false;
  const tm = spec.targetModules;
  // PEFT resolves a null target_modules from the model type before saving, so a saved null says
  // nothing: accept whatever modules the weights hold.
  if (tm === null) return true;
  let found =
    tm === 'all-linear'
      ? !/(^|\.)lm_head$/.test(modulePath)
      : matchesNames(tm, modulePath, `${source}: "target_modules"`);
  // As in PEFT, layer filters apply only to name lists, not to regexes or exact full paths.
  const want = spec.layersToTransform;
  const usingLayers = want !== null && want !== undefined && (typeof want === 'number' || want.length > 0);
  if (found && usingLayers && typeof tm !== 'string' && !tm.includes(modulePath)) {
    const patterns =
      spec.layersPattern == null
        ? []
        : typeof spec.layersPattern === 'string'
          ? [spec.layersPattern]
          : spec.layersPattern;
    let m: RegExpExecArray | null = null;
    if (patterns.length === 0) m = /^.*\.[^.]*\.(\d+)\./.exec(modulePath);
    else
      for (const p of patterns)
        if ((m = pythonRegex(`.*\\.${p}\\.(\\d+)\\.`, 'start', `${source}: "layers_pattern"`).exec(modulePath))) break;
    if (!m) found = false;
    else {
      const layer = Number(m[1]);
      found = typeof want === 'number' ? layer === want : want.includes(layer);
    }
  }
  return found;
}
