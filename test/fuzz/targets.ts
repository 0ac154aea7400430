// What the fuzz suite feeds and what it expects. Each target makes case `i` of a seed (only from
// the seed and i, so any case can be replayed alone) and runs it: the run must either accept the
// input correctly (checked against an independent property: a round trip, finite values, the
// documented bounds) or refuse it with a ChorusError of bounded length. Any other exception
// (RangeError, TypeError, ReferenceError…) is a failure, and so is a hang or a memory blow-up,
// which the harness watches from outside the thread.
import YAML from 'yaml';
import { ChorusError } from '../../shared/errors.ts';
import { parseJobSpec } from '../../shared/job/parse.ts';
import { specToWire } from '../../shared/job/wire.ts';
import * as L from '../../shared/job/limits.ts';
import { adapterFromObjectBytes, peftAdapterFromBytes } from '../../shared/formats/peft.ts';
import { findPatternKey, isTargetModule } from '../../shared/formats/peft-patterns.ts';
import { parseSafetensors } from '../../shared/formats/safetensors.ts';
import { serializeSafetensors, type TensorInput } from '../../shared/formats/safetensors-write.ts';
import { deepText, EVIL_PATTERNS, hostileValue, mutateBytes, mutateText, mutateValue, Rng } from './generate.ts';

/** Input to one case: text, bytes or both (what postMessage carries cheaply). */
export interface FuzzCase {
  text?: string;
  bytes?: Uint8Array;
}

export interface Target {
  name: string;
  make(seed: number, i: number): FuzzCase;
  /** 'accepted' or 'refused'; throws an Error describing the failure otherwise. */
  run(c: FuzzCase): 'accepted' | 'refused';
}

/** Longest acceptable error message: specs list 20 problems of at most 300 characters. */
const MAX_MESSAGE = 8000;

function refusedClearly(err: unknown): 'refused' {
  if (!(err instanceof ChorusError)) {
    const name = err instanceof Error ? err.constructor.name : typeof err;
    throw new Error(`unclear error: ${name}: ${String(err instanceof Error ? err.message : err).slice(0, 300)}`);
  }
  if (err.message.length === 0 || err.message.length > MAX_MESSAGE) {
    throw new Error(`error message of ${err.message.length} characters (limit ${MAX_MESSAGE})`);
  }
  return 'refused';
}

function attempt(fn: () => void): 'accepted' | 'refused' {
  try {
    fn();
    return 'accepted';
  } catch (err) {
    return refusedClearly(err);
  }
}

function fail(why: string): never {
  throw new Error(`wrong acceptance: ${why}`);
}

// ---------------------------------------------------------------------------------------------
// Job specs

const SPEC_SEEDS: object[] = [
  {
    name: 'fuzz',
    base_model: '/m',
    seed: 1,
    lora: { r: 8, alpha: 16, dropout: 0.05, target_modules: ['q_proj', 'v_proj'], use_rslora: false },
    coto: { enabled: true, p_start: 0.1, p_end: 1, ramp_fraction: 0.75 },
    training: { steps: 100, batch_size: 8, seq_len: 64, lr: 0.001, warmup_steps: 10, betas: [0.9, 0.999] },
    data: { train: 'train.jsonl', eval: 'eval.jsonl' },
  },
  {
    base_model: '/m',
    training: { steps: 50, lr: 0.002 },
    lora: { r: 4 },
    tasks: [
      { name: 'a', data: { train: '/a.jsonl' }, replicas: 2, training: { lr: 0.01 } },
      { name: 'b', data: { train: 'chorus-object://file/x/y' } },
    ],
    sync: { mode: 'weights', every: 10, method: 'mean' },
    merge: { method: 'ties', weights: [1, 0.5], density: 0.5, rank: 16 },
  },
];

const specs: Target = {
  name: 'job-spec',
  make(seed, i) {
    const rng = new Rng(seed * 1_000_003 + i);
    let value: unknown = rng.pick(SPEC_SEEDS);
    if (rng.chance(0.8)) value = mutateValue(value, rng);
    let text = rng.chance(0.5) ? JSON.stringify(value) : YAML.stringify(value, { aliasDuplicateObjects: false });
    if (rng.chance(0.4)) text = mutateText(text, rng);
    return { text };
  },
  run({ text }) {
    return attempt(() => {
      const spec = parseJobSpec(text!, { sourcePath: '/fuzz/job.yaml' });
      // Accepted: within the documented bounds, and its wire form reads back the same.
      const shards = spec.tasks.reduce((n, t) => n + t.replicas, 0);
      if (shards > L.MAX_SHARDS) fail(`${shards} shards`);
      for (const t of spec.tasks) {
        if (t.replicas > L.MAX_REPLICAS || t.training.steps > L.MAX_STEPS || t.lora.r > L.MAX_LORA_RANK)
          fail(`task ${t.name} out of bounds`);
        if (t.training.batchSize > L.MAX_BATCH_SIZE || t.training.seqLen > L.MAX_SEQ_LEN)
          fail('batch/seq out of bounds');
      }
      const again = parseJobSpec(specToWire(spec));
      if (JSON.stringify(again.tasks) !== JSON.stringify(spec.tasks)) fail('wire form reads back differently');
    });
  },
};

// ---------------------------------------------------------------------------------------------
// safetensors

function validFile(rng: Rng): Uint8Array {
  const dtype = rng.pick(['F32', 'F16', 'BF16', 'I64', 'U8'] as const);
  const tensors: Array<TensorInput & { name: string }> = [];
  for (let n = 1 + rng.int(3); n > 0; n--) {
    const shape = [1 + rng.int(3), 1 + rng.int(3)];
    tensors.push({ name: `t${n}`, dtype, shape, data: Array.from({ length: shape[0] * shape[1] }, (_, k) => k % 5) });
  }
  return serializeSafetensors(tensors, rng.chance(0.5) ? { format: 'pt' } : undefined);
}

function withHeader(header: unknown, data: Uint8Array): Uint8Array {
  return withHeaderText(JSON.stringify(header), data);
}

function withHeaderText(text: string, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const safetensors: Target = {
  name: 'safetensors',
  make(seed, i) {
    const rng = new Rng(seed * 1_000_033 + i);
    const file = validFile(rng);
    if (rng.chance(0.5)) return { bytes: mutateBytes(file, rng) };
    const n = Number(new DataView(file.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n)));
    const name = rng.chance(0.2) ? rng.pick(['\ud800', 'a\udc00', '__metadata__', 'x'.repeat(10_000)]) : null;
    if (name) header[name] = header.t1;
    if (rng.chance(0.1)) {
      const text = JSON.stringify(header).replace('"shape":', `"shape":${deepText(rng.pick([500, 10_000]))},"x":`);
      return { bytes: withHeaderText(text, file.subarray(8 + n)) };
    }
    return { bytes: withHeader(mutateValue(header, rng), file.subarray(8 + n)) };
  },
  run({ bytes }) {
    return attempt(() => {
      const { tensors, metadata } = parseSafetensors(bytes!, 'fuzz.safetensors');
      // Accepted: every view matches its shape, and writing it again gives a file that reads the same.
      const again = parseSafetensors(
        serializeSafetensors(
          [...tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.bytes })),
          metadata,
        ),
        'again',
      );
      for (const [name, t] of tensors) {
        const u = again.tensors.get(name);
        if (!u || u.bytes.length !== t.bytes.length || u.bytes.some((b, k) => b !== t.bytes[k])) fail(`tensor ${name}`);
      }
    });
  },
};

// ---------------------------------------------------------------------------------------------
// PEFT adapters (config + weights) and the object-store form workers upload

const Q = 'model.layers.0.self_attn.q_proj';
const V = 'model.layers.1.self_attn.v_proj';

function adapterWeights(rng: Rng): Uint8Array {
  const dtype = rng.chance(0.85) ? rng.pick(['F32', 'F16', 'BF16'] as const) : rng.pick(['I32', 'U8', 'F64'] as const);
  const special = rng.chance(0.15) ? rng.pick([NaN, Infinity, -Infinity]) : 0.5;
  const tensors = new Map<string, TensorInput>();
  for (const path of [Q, V]) {
    tensors.set(`base_model.model.${path}.lora_A.weight`, {
      dtype,
      shape: [2, 4],
      data: [1, 2, 3, 4, 5, 6, 7, special],
    });
    tensors.set(`base_model.model.${path}.lora_B.weight`, { dtype, shape: [4, 2], data: [1, 0, 0, 1, 1, 1, 0, 0] });
  }
  return serializeSafetensors(tensors);
}

const peft: Target = {
  name: 'peft',
  make(seed, i) {
    const rng = new Rng(seed * 1_000_037 + i);
    const config: Record<string, unknown> = {
      peft_type: 'LORA',
      r: 2,
      lora_alpha: 4,
      target_modules: ['q_proj', 'v_proj'],
    };
    for (const field of ['rank_pattern', 'alpha_pattern']) {
      if (rng.chance(0.4)) config[field] = { [rng.pick(EVIL_PATTERNS)]: rng.pick([2, 4, 0, -16, 2.5]) };
    }
    if (rng.chance(0.3)) config.target_modules = rng.pick(EVIL_PATTERNS);
    if (rng.chance(0.2)) config.exclude_modules = rng.pick(EVIL_PATTERNS);
    if (rng.chance(0.2)) config.lora_alpha = rng.pick([-16, 0, 1e308, 16]);
    const mutated = rng.chance(0.4) ? mutateValue(config, rng) : config;
    let text = JSON.stringify(mutated);
    if (rng.chance(0.1)) text = rng.chance(0.5) ? `\ufeff${text}` : text.replace('"r":2', `"r":${deepText(10_000)}`);
    return { text, bytes: adapterWeights(rng) };
  },
  run({ text, bytes }) {
    return attempt(() => {
      const adapter = peftAdapterFromBytes(bytes!, text!, 'fuzz');
      for (const [path, m] of adapter.modules) {
        if (!(m.scaling > 0 && Number.isFinite(m.scaling))) fail(`${path} scaling ${m.scaling}`);
        if (m.a.some((x) => !Number.isFinite(x)) || m.b.some((x) => !Number.isFinite(x)))
          fail(`${path} non-finite factors`);
        if (m.a.length !== m.rank * m.inFeatures) fail(`${path} rank`);
      }
    });
  },
};

const adapterObjects: Target = {
  name: 'adapter-object',
  make(seed, i) {
    const rng = new Rng(seed * 1_000_039 + i);
    const config = { r: 2, loraAlpha: 4, targetModules: ['q_proj'], loraDropout: 0, useRslora: false, rankPattern: {} };
    const scalings: Record<string, unknown> = { [Q]: 2, [V]: 2 };
    const meta = {
      format: 'pt',
      chorus_config: JSON.stringify(rng.chance(0.6) ? mutateValue(config, rng) : config),
      chorus_scalings: JSON.stringify(rng.chance(0.3) ? mutateValue(scalings, rng) : scalings),
    };
    const w = adapterWeights(rng);
    const n = Number(new DataView(w.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(w.subarray(8, 8 + n)));
    return { bytes: withHeader({ ...header, __metadata__: meta }, w.subarray(8 + n)) };
  },
  run({ bytes }) {
    return attempt(() => {
      const adapter = adapterFromObjectBytes(bytes!, 'fuzz-object');
      for (const [path, m] of adapter.modules) {
        if (m.a.some((x) => !Number.isFinite(x)) || m.b.some((x) => !Number.isFinite(x)))
          fail(`${path} non-finite factors`);
      }
    });
  },
};

// ---------------------------------------------------------------------------------------------
// Pattern matching alone, on long module names (where backtracking hurts most)

const patterns: Target = {
  name: 'peft-patterns',
  make(seed, i) {
    const rng = new Rng(seed * 1_000_081 + i);
    const key = rng.chance(0.7) ? rng.pick(EVIL_PATTERNS) : String(hostileValue(rng)).slice(0, 2000);
    const name = `${'a.'.repeat(rng.pick([1, 100, 5000]))}${rng.pick(['q_proj', 'x', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaa!'])}`;
    return { text: JSON.stringify([key, name]) };
  },
  run({ text }) {
    const [key, name] = JSON.parse(text!) as [string, string];
    return attempt(() => {
      findPatternKey([key], name, 'rank_pattern');
      isTargetModule({ targetModules: key, excludeModules: [key] }, name, 'fuzz');
    });
  },
};

export const TARGETS: Record<string, Target> = Object.fromEntries(
  [specs, safetensors, peft, adapterObjects, patterns].map((t) => [t.name, t]),
);

/**
 * Canaries prove the harness can fail: a backtracking regex (hang), an unbounded allocation, a
 * CPU-bound case (slow) and an exception that is not a ChorusError (unclear).
 */
export const CANARIES: Record<string, Target> = {
  'canary-hang': {
    name: 'canary-hang',
    make: () => ({ text: `${'a'.repeat(40)}!` }),
    run: ({ text }) => (/^(a|a)*$/.test(text!) ? 'accepted' : 'refused'),
  },
  'canary-memory': {
    name: 'canary-memory',
    make: () => ({}),
    run: () => {
      const keep: string[] = [];
      for (;;) keep.push('x'.repeat(1 << 20) + keep.length);
    },
  },
  'canary-slow': {
    name: 'canary-slow',
    make: () => ({}),
    run: () => {
      // 250 ms of CPU, however long the machine takes to give it.
      const c0 = process.cpuUsage();
      for (let spent = 0; spent < 250_000;) {
        const c = process.cpuUsage(c0);
        spent = c.user + c.system;
      }
      return 'accepted';
    },
  },
  'canary-unclear': {
    name: 'canary-unclear',
    // A reader that trusts a field it never checked: a TypeError, not a ChorusError. It goes
    // through attempt() like every target's run, so refusedClearly must call it unclear. Cheap
    // (well under 1 ms of CPU), so the short limit set for canary-slow never decides its report.
    make: () => ({ text: '{"header":null}' }),
    run: ({ text }) =>
      attempt(() => {
        const doc = JSON.parse(text!) as { header: { size: number } };
        if (doc.header.size > 0) fail('a null header has no size');
      }),
  },
};
