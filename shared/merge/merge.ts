// mergeAdapters: checks the inputs, merges module by module (one module's dense data at a time),
// and builds the output config.
import type { LoraAdapter, LoraConfig, LoraModule } from '../lora/types.ts';
import { mergeModuleDelta } from './delta.ts';
import { mergeModuleFactors } from './factors.ts';
import { checkCompatible, resolveOptions, type MergeOptions, type MergeResult, type ModuleReport } from './options.ts';

export function mergeAdapters(adapters: LoraAdapter[], options: MergeOptions): MergeResult {
  const opt = resolveOptions(adapters.length, options);
  const names = checkCompatible(adapters, opt.labels);
  const modules = new Map<string, LoraModule>();
  const reports: ModuleReport[] = [];
  names.forEach((name, i) => {
    const mods = adapters.map((ad) => ad.modules.get(name)!);
    const out = opt.space === 'factors' ? mergeModuleFactors(name, mods, opt) : mergeModuleDelta(name, mods, opt);
    modules.set(name, out.module);
    reports.push(out.report);
    options.onModule?.(out.report, i, names.length);
  });
  const targets: string[] = [];
  for (const ad of adapters) for (const t of ad.config.targetModules) if (!targets.includes(t)) targets.push(t);
  const { loraDropout, baseModelNameOrPath } = adapters[0].config;
  const config = unitScalingConfig(modules, { targetModules: targets, loraDropout, baseModelNameOrPath });
  return { adapter: { config, modules }, modules: reports };
}

/**
 * Config for modules whose scaling is 1: lora_alpha = r and no rsLoRA (PEFT's convention for merged
 * adapters). The most common rank becomes `r`; modules of another rank go to rank/alpha patterns
 * keyed by their full path.
 */
export function unitScalingConfig(
  modules: Map<string, LoraModule>,
  base: Pick<LoraConfig, 'targetModules' | 'loraDropout' | 'baseModelNameOrPath'>,
): LoraConfig {
  const counts = new Map<number, number>();
  for (const m of modules.values()) counts.set(m.rank, (counts.get(m.rank) ?? 0) + 1);
  let r = 0;
  let best = -1;
  for (const [rank, c] of counts) if (c > best || (c === best && rank > r)) [r, best] = [rank, c];
  const rankPattern: Record<string, number> = {};
  for (const [name, m] of modules) if (m.rank !== r) rankPattern[name] = m.rank;
  const config: LoraConfig = {
    r,
    loraAlpha: r,
    targetModules: [...base.targetModules],
    loraDropout: base.loraDropout,
    useRslora: false,
  };
  if (base.baseModelNameOrPath !== undefined) config.baseModelNameOrPath = base.baseModelNameOrPath;
  if (Object.keys(rankPattern).length > 0) {
    config.rankPattern = rankPattern;
    config.alphaPattern = { ...rankPattern };
  }
  return config;
}
