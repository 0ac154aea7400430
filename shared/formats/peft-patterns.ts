// PEFT's module-name matching rules, reproduced so an adapter_config.json means here what it means
// in PEFT (peft/utils/other.py get_pattern_key, peft/tuners/tuners_utils.py
// check_target_module_exists). Pattern keys are Python regex fragments, and they arrive in files
// anyone may send: a backtracking engine (JS RegExp) takes exponential time on `(.*)*x` and pinned
// the coordinator at 100 % CPU. They run on RE2 (re2js) instead: time linear in the module name,
// Python's (?P<name>…) groups included; what RE2 lacks (backreferences, lookaround) is refused by
// name. Patterns are also capped in length, and each is compiled once.
import { RE2JS } from 're2js';
import { ChorusError, describe } from '../errors.ts';

/** Characters in one pattern (PEFT configs in the wild use a few dozen). */
const MAX_PATTERN_CHARS = 1024;

const compiled = new Map<string, RE2JS>();

/** A linear-time regex for a PEFT pattern; `field` names it in errors. */
function compile(pattern: string, field: string): RE2JS {
  let re = compiled.get(pattern);
  if (re) return re;
  try {
    re = RE2JS.compile(pattern);
  } catch (err) {
    throw new ChorusError(
      `${field}: invalid or unsupported regular expression ${describe(pattern, 80)} (${(err as Error).message.slice(0, 160)}; ` +
        'patterns run on RE2: no backreferences or lookaround)',
    );
  }
  if (compiled.size > 10_000) compiled.clear();
  compiled.set(pattern, re);
  return re;
}

/** Checks one user pattern's length; `what` names it in the error. */
function checkLength(pattern: string, what: string): void {
  if (pattern.length > MAX_PATTERN_CHARS) {
    throw new ChorusError(
      `${what}: pattern of ${pattern.length} characters exceeds the ${MAX_PATTERN_CHARS}-character limit`,
    );
  }
}

/** Python's re.fullmatch(pattern, text). */
export function fullMatch(pattern: string, text: string, field: string): boolean {
  checkLength(pattern, field);
  return compile(pattern, field).matcher(text).matches();
}

/**
 * PEFT's get_pattern_key: the first key (in file order) such that re.match(rf"(.*\.)?({key})$", module)
 * matches, i.e. the key matches a dot-separated suffix of the module path (or all of it).
 */
export function findPatternKey(patternKeys: Iterable<string>, modulePath: string, field: string): string | undefined {
  for (const key of patternKeys) {
    const what = `${field} key ${describe(key, 80)}`;
    checkLength(key, what);
    if (compile(`(.*\\.)?(${key})`, what).matcher(modulePath).matches()) return key;
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

/** Every key of a pattern map compiles (errors name the key before any module is looked up). */
export function checkPatternKeys(patterns: Record<string, number>, field: string): void {
  for (const key of Object.keys(patterns)) {
    const what = `${field} key ${describe(key, 80)}`;
    checkLength(key, what);
    compile(`(.*\\.)?(${key})`, what);
  }
}

export interface TargetSpec {
  targetModules: string[] | string | null;
  excludeModules?: string[] | string | null;
  layersToTransform?: number[] | number | null;
  layersPattern?: string[] | string | null;
}

function matchesNames(spec: string[] | string, modulePath: string, field: string): boolean {
  if (typeof spec === 'string') return fullMatch(spec, modulePath, field);
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
    let layer: string | null = null;
    if (patterns.length === 0) {
      const m = compile('.*\\.[^.]*\\.(\\d+)\\.', 'layers_pattern').matcher(modulePath);
      layer = m.lookingAt() ? m.group(1) : null;
    } else
      for (const p of patterns) {
        const field = `${source}: "layers_pattern"`;
        checkLength(p, field);
        // re.match: anchored at the start only.
        const m = compile(`.*\\.${p}\\.(\\d+)\\.`, field).matcher(modulePath);
        if (m.lookingAt()) {
          layer = m.group(1);
          break;
        }
      }
    if (layer === null) found = false;
    else {
      const n = Number(layer);
      found = typeof want === 'number' ? n === want : want.includes(n);
    }
  }
  return found;
}
