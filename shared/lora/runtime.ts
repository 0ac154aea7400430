// LoRA adapters as trainable tfjs variables attached to a frozen LlamaModel. Public API:
//   resolveTargetModules(names, source?) → ModuleName[]     validates target_modules
//   class LoraRuntime implements LoraProvider
//     static create(model, config: LoraConfig, { seed }) → fresh PEFT-initialised adapter
//     static fromAdapter(model, adapter: LoraAdapter)      → runtime holding the adapter's values
//     load(adapter)                      assigns values (same modules and shapes required)
//     toAdapter() → LoraAdapter          copies the current values out (plain typed arrays)
//     variables() / variablesOfLayer(l)  trainable tf.Variables (A then B per module)
//     namedVariables() → Map<"<module path>.lora_A"|".lora_B", Variable>  stable keys for optimiser state
//     layers() → layer indices that carry an adapter
//     setActiveGroups(on | null)          lora.split: rank groups used by training passes (split.ts)
//     dispose()
// Semantics (PEFT's LoraLayer): y = W x + s · B(A(dropout(x))), s = alpha/r (rsLoRA: alpha/√r);
// A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in), B = 0, so a fresh adapter leaves the model unchanged.
// Dropout only when training, seeded per (step seed, layer, module) so reruns are identical.
import { tf } from '../tensor/engine.ts';
import { ChorusError } from '../errors.ts';
import { deriveSeed, fillUniform } from '../tensor/random.ts';
import { lookupPattern } from '../formats/peft-patterns.ts';
import { checkLoraConfig } from './check.ts';
import { loraDelta } from '../tensor/ops.ts';
import { rankMask } from './split.ts';
import { layerOfModule, loraScaling, type LoraAdapter, type LoraConfig, type LoraModule } from './types.ts';
import {
  MODULE_NAMES,
  isModuleName,
  modulePath,
  moduleShape,
  type LlamaModel,
  type LoraContext,
  type LoraProvider,
  type ModuleName,
} from '../model/llama.ts';

export function resolveTargetModules(names: readonly string[], source = 'target_modules'): ModuleName[] {
  if (names.length === 0) throw new ChorusError(`${source}: must name at least one module`);
  const out = new Set<ModuleName>();
  for (const n of names) {
    if (n === 'all-linear') MODULE_NAMES.forEach((m) => out.add(m));
    else if (isModuleName(n)) out.add(n);
    else throw new ChorusError(`${source}: unknown module '${n}' (expected ${MODULE_NAMES.join(', ')} or all-linear)`);
  }
  return MODULE_NAMES.filter((m) => out.has(m));
}

interface Slot {
  path: string;
  layer: number;
  name: ModuleName;
  a: tf.Variable; // [r, in]
  b: tf.Variable; // [out, r]
  rank: number;
  inFeatures: number;
  outFeatures: number;
  scaling: number;
}

export class LoraRuntime implements LoraProvider {
  readonly config: LoraConfig;
  private readonly slots = new Map<string, Slot>(); // key `${layer}:${name}`
  private readonly byPath = new Map<string, Slot>();
  private disposed = false;
  private groupsOn: boolean[] | null = null;

  private constructor(config: LoraConfig) {
    this.config = config;
  }

  static create(model: LlamaModel, config: LoraConfig, opts: { seed: number }): LoraRuntime {
    checkLoraConfig(config, 'lora');
    const targets = resolveTargetModules(config.targetModules);
    const rt = new LoraRuntime({ ...config, targetModules: targets });
    for (let l = 0; l < model.config.numHiddenLayers; l++) {
      targets.forEach((name) => {
        const path = modulePath(l, name);
        const { inFeatures, outFeatures } = moduleShape(model.config, name);
        const rank = lookupPattern(config.rankPattern, path, config.r, 'rank_pattern');
        const alpha = lookupPattern(config.alphaPattern, path, config.loraAlpha, 'alpha_pattern');
        const bound = 1 / Math.sqrt(inFeatures);
        const a = fillUniform(
          new Float32Array(rank * inFeatures),
          deriveSeed(opts.seed, l, MODULE_NAMES.indexOf(name)),
          -bound,
          bound,
        );
        const b = new Float32Array(outFeatures * rank);
        rt.addSlot(
          { a, b, rank, inFeatures, outFeatures, scaling: loraScaling(alpha, rank, config.useRslora) },
          path,
          l,
          name,
        );
      });
    }
    return rt;
  }

  static fromAdapter(model: LlamaModel, adapter: LoraAdapter, source = 'adapter'): LoraRuntime {
    checkLoraConfig(adapter.config, source);
    if (adapter.modules.size === 0) throw new ChorusError(`${source}: holds no LoRA modules`);
    const rt = new LoraRuntime(adapter.config);
    for (const [path, mod] of adapter.modules) {
      const { layer, name } = parsePath(path, model, source);
      const { inFeatures, outFeatures } = moduleShape(model.config, name);
      if (mod.inFeatures !== inFeatures || mod.outFeatures !== outFeatures) {
        throw new ChorusError(
          `${source}: ${path} is ${mod.outFeatures}×${mod.inFeatures}, the model's module is ${outFeatures}×${inFeatures}`,
        );
      }
      checkModule(mod, path, source);
      rt.addSlot(mod, path, layer, name);
    }
    return rt;
  }

  private addSlot(mod: LoraModule, path: string, layer: number, name: ModuleName): void {
    const slot: Slot = {
      path,
      layer,
      name,
      a: tf.variable(tf.tensor2d(mod.a, [mod.rank, mod.inFeatures]), true),
      b: tf.variable(tf.tensor2d(mod.b, [mod.outFeatures, mod.rank]), true),
      rank: mod.rank,
      inFeatures: mod.inFeatures,
      outFeatures: mod.outFeatures,
      scaling: mod.scaling,
    };
    this.slots.set(`${layer}:${name}`, slot);
    this.byPath.set(path, slot);
  }

  delta(layer: number, name: ModuleName, x: tf.Tensor2D, ctx: LoraContext): tf.Tensor2D | null {
    const s = this.slots.get(`${layer}:${name}`);
    if (!s) return null;
    let input = x;
    const rate = this.config.loraDropout;
    if (ctx.training && rate > 0) {
      const seed = deriveSeed(ctx.dropoutSeed ?? 0, layer, MODULE_NAMES.indexOf(name));
      input = tf.dropout(x, rate, undefined, seed) as tf.Tensor2D;
    }
    let a = s.a as tf.Tensor2D;
    // lora.split: only the step's active rank groups take part (and so only they get gradients).
    if (ctx.training && this.groupsOn) a = tf.mul(a, tf.tensor2d(rankMask(s.rank, this.groupsOn), [s.rank, 1]));
    return loraDelta(input, a, s.b as tf.Tensor2D, s.scaling);
  }

  /**
   * lora.split: the rank groups that take part in training passes until the next call (null: all).
   * Evaluation always uses every group: the merged adapter.
   */
  setActiveGroups(groupsOn: boolean[] | null): void {
    this.groupsOn = groupsOn ? [...groupsOn] : null;
  }

  /** Replaces the values with an adapter's (e.g. a round's merged result); shapes must match. */
  load(adapter: LoraAdapter, source = 'adapter'): void {
    const seen = new Set<string>();
    for (const [path, mod] of adapter.modules) {
      const slot = this.byPath.get(path);
      if (!slot) throw new ChorusError(`${source}: module ${path} is not part of this adapter`);
      if (mod.rank !== slot.rank || mod.inFeatures !== slot.inFeatures || mod.outFeatures !== slot.outFeatures) {
        throw new ChorusError(
          `${source}: ${path} has rank ${mod.rank} (${mod.outFeatures}×${mod.inFeatures}), expected rank ${slot.rank} (${slot.outFeatures}×${slot.inFeatures})`,
        );
      }
      checkModule(mod, path, source);
      tf.tidy(() => {
        slot.a.assign(tf.tensor2d(mod.a, [mod.rank, mod.inFeatures]));
        slot.b.assign(tf.tensor2d(mod.b, [mod.outFeatures, mod.rank]));
      });
      slot.scaling = mod.scaling;
      seen.add(path);
    }
    for (const s of this.slots.values()) {
      if (!seen.has(s.path)) throw new ChorusError(`${source}: module ${s.path} is missing`);
    }
  }

  toAdapter(): LoraAdapter {
    const modules = new Map<string, LoraModule>();
    for (const s of this.orderedSlots()) {
      modules.set(s.path, {
        a: new Float32Array(s.a.dataSync() as Float32Array),
        b: new Float32Array(s.b.dataSync() as Float32Array),
        rank: s.rank,
        inFeatures: s.inFeatures,
        outFeatures: s.outFeatures,
        scaling: s.scaling,
      });
    }
    return { config: { ...this.config, targetModules: [...this.config.targetModules] }, modules };
  }

  private orderedSlots(): Slot[] {
    return [...this.slots.values()].sort(
      (x, y) => x.layer - y.layer || MODULE_NAMES.indexOf(x.name) - MODULE_NAMES.indexOf(y.name),
    );
  }

  variables(): tf.Variable[] {
    return this.orderedSlots().flatMap((s) => [s.a, s.b]);
  }

  variablesOfLayer(layer: number): tf.Variable[] {
    return this.orderedSlots()
      .filter((s) => s.layer === layer)
      .flatMap((s) => [s.a, s.b]);
  }

  namedVariables(): Map<string, tf.Variable> {
    const m = new Map<string, tf.Variable>();
    for (const s of this.orderedSlots()) {
      m.set(`${s.path}.lora_A`, s.a);
      m.set(`${s.path}.lora_B`, s.b);
    }
    return m;
  }

  layers(): number[] {
    return [...new Set(this.orderedSlots().map((s) => s.layer))];
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const s of this.slots.values()) {
      s.a.dispose();
      s.b.dispose();
    }
    this.slots.clear();
    this.byPath.clear();
  }
}

function parsePath(path: string, model: LlamaModel, source: string): { layer: number; name: ModuleName } {
  const layer = layerOfModule(path);
  const name = path.slice(path.lastIndexOf('.') + 1);
  if (layer < 0 || !isModuleName(name) || modulePath(layer, name) !== path) {
    throw new ChorusError(
      `${source}: module path '${path}' is not a Llama linear module (e.g. model.layers.0.self_attn.q_proj)`,
    );
  }
  if (layer >= model.config.numHiddenLayers) {
    throw new ChorusError(
      `${source}: ${path} names layer ${layer}, the model has ${model.config.numHiddenLayers} layers`,
    );
  }
  return { layer, name };
}

function checkModule(mod: LoraModule, path: string, source: string): void {
  if (mod.a.length !== mod.rank * mod.inFeatures) {
    throw new ChorusError(
      `${source}: ${path} lora_A holds ${mod.a.length} values, expected ${mod.rank}×${mod.inFeatures}`,
    );
  }
  if (mod.b.length !== mod.outFeatures * mod.rank) {
    throw new ChorusError(
      `${source}: ${path} lora_B holds ${mod.b.length} values, expected ${mod.outFeatures}×${mod.rank}`,
    );
  }
}
