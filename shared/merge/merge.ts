// mergeAdapters: checks the inputs, merges module by module (in this thread or in merge threads,
// one module's dense data at a time per thread), and builds the output config.
import type { LoraAdapter, LoraConfig, LoraModule } from '../lora/types.ts';
import { mergeModuleDelta, type ModuleOutcome } from './delta.ts';
import { mergeModuleFactors } from './factors.ts';
import {
  checkCompatible,
  checkThreads,
  resolveOptions,
  type MergeOptions,
  type MergeResult,
  type ModuleReport,
  type ResolvedOptions,
} from './options.ts';
import { runModuleJobs, threadCount } from './parallel.ts';

export async function mergeAdapters(adapters: LoraAdapter[], options: MergeOptions): Promise<MergeResult> {
  const opt = resolveOptions(adapters.length, options);
  const names = checkCompatible(adapters, opt.labels);
  const modules = new Map<string, LoraModule>();
  const reports: ModuleReport[] = [];
  await runModuleJobs(
    names.length,
    (i) => ({ kind: 'merge', name: names[i], mods: adapters.map((ad) => ad.modules.get(names[i])!), options: opt }),
    threadCount(
      checkThreads(options.threads),
      names.map((name) => adapters[0].modules.get(name)!),
    ),
    (i, out) => {
      const report = out.report as ModuleReport;
      modules.set(names[i], out.module!);
      reports.push(report);
      options.onModule?.(report, i, names.length);
    },
  );
  const targets: string[] = [];
  for (const ad of adapters) for (const t of ad.config.targetModules) if (!targets.includes(t)) targets.push(t);
  const { loraDropout, baseModelNameOrPath } = adapters[0].config;
  const config = unitScalingConfig(modules, { targetModules: targets, loraDropout, baseModelNameOrPath });
  return { adapter: { config, modules }, modules: reports };
}

/** One module of a merge (what a merge thread runs). */
export function mergeModule(name: string, mods: LoraModule[], opt: ResolvedOptions): ModuleOutcome {
  return opt.space === 'factors' ? mergeModuleFactors(name, mods, opt) : mergeModuleDelta(name, mods, opt);
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
