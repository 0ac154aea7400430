// `chorus init-model`: writes a Hugging Face Llama directory with random weights (HF's init:
// N(0, 0.02), norms 1; seeded) plus the built-in byte tokenizer, so tiny models can be trained
// and tested without downloading anything.
import type { Command } from 'commander';
import { existsSync, readdirSync } from 'node:fs';
import { ChorusError } from '../../shared/errors.ts';
import { llamaConfigToJson, makeLlamaConfig, parseLlamaConfig } from '../../shared/model/config.ts';
import { randomWeightSources } from '../../shared/model/llama.ts';
import { writeHfModelDir } from '../../shared/formats/hf-model.ts';
import { writeByteTokenizer } from '../../shared/data/tokenizer.ts';
import { parseByteSize, parseDtype, parsePositiveInt } from './flags.ts';

function positiveNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new ChorusError(`${flag} must be a positive number, got '${value}'`);
  return n;
}

export interface InitModelOptions {
  arch: string;
  hidden: string;
  layers: string;
  heads: string;
  kvHeads?: string;
  vocab: string;
  intermediate?: string;
  headDim?: string;
  ropeTheta?: string;
  rmsNormEps?: string;
  maxPositions?: string;
  seed: string;
  tie?: boolean;
  /** Stored dtype of the weights: f32 (default), f16 or bf16. */
  dtype?: string;
  /** Split into safetensors shards of at most this size ("2GB", "500MiB"). */
  maxShardSize?: string;
  /** A llama3 rope_scaling block (factor 32, low 1, high 4, original 8192: Llama 3.2's). */
  ropeScaling?: string;
  tokenizer: boolean;
  force?: boolean;
  out: string;
}

export async function initModel(o: InitModelOptions): Promise<{ parameters: number; tokenizer: boolean }> {
  if (o.arch !== 'llama') throw new ChorusError(`--arch '${o.arch}' is not supported (only llama)`);
  const seed = Number(o.seed);
  if (!Number.isSafeInteger(seed)) throw new ChorusError(`--seed must be an integer, got '${o.seed}'`);
  if (existsSync(o.out) && readdirSync(o.out).length > 0 && !o.force) {
    throw new ChorusError(`${o.out}: directory is not empty (use --force to overwrite the model files)`);
  }
  const vocab = parsePositiveInt(o.vocab, '--vocab')!;
  const dtype = parseDtype(o.dtype ?? 'f32');
  const shardBytes = parseByteSize(o.maxShardSize, '--max-shard-size');
  const config = makeLlamaConfig({
    hiddenSize: parsePositiveInt(o.hidden, '--hidden')!,
    numHiddenLayers: parsePositiveInt(o.layers, '--layers')!,
    numAttentionHeads: parsePositiveInt(o.heads, '--heads')!,
    numKeyValueHeads: parsePositiveInt(o.kvHeads, '--kv-heads'),
    vocabSize: vocab,
    intermediateSize: parsePositiveInt(o.intermediate, '--intermediate'),
    headDim: parsePositiveInt(o.headDim, '--head-dim'),
    tieWordEmbeddings: o.tie ?? false,
    ropeTheta: positiveNumber(o.ropeTheta, '--rope-theta'),
    rmsNormEps: positiveNumber(o.rmsNormEps, '--rms-norm-eps'),
    maxPositionEmbeddings: parsePositiveInt(o.maxPositions, '--max-positions'),
  });
  const json = llamaConfigToJson(config);
  json.torch_dtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype];
  if (o.ropeScaling !== undefined) {
    if (o.ropeScaling !== 'llama3') throw new ChorusError(`--rope-scaling must be llama3, got '${o.ropeScaling}'`);
    // Llama 3.2's values; parsing the result checks them as a loaded model's would be.
    json.rope_scaling = {
      rope_type: 'llama3',
      factor: 32,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    };
    parseLlamaConfig(json, '--rope-scaling');
  }
  // The byte tokenizer needs ids 0..255; with vocab ≥ 258 it also gets <s> and </s>.
  const withTokenizer = o.tokenizer && vocab >= 256;
  if (withTokenizer) {
    Object.assign(json, vocab >= 258 ? { bos_token_id: 256, eos_token_id: 257, pad_token_id: 257 } : {});
  }
  // Drawn tensor by tensor as the writer reaches it: a 1B model never sits in memory as float32.
  const tensors = randomWeightSources(config, seed);
  await writeHfModelDir(o.out, json, tensors, { dtype, shardBytes });
  if (withTokenizer) await writeByteTokenizer(o.out, vocab);
  let parameters = 0;
  for (const [name, t] of tensors)
    if (!(config.tieWordEmbeddings && name === 'lm_head.weight')) parameters += t.shape.reduce((a, b) => a * b, 1);
  return { parameters, tokenizer: withTokenizer };
}

export function register(program: Command): void {
  program
    .command('init-model')
    .description('write a Hugging Face Llama model directory with random weights and a byte tokenizer')
    .option('--arch <arch>', 'architecture (llama)', 'llama')
    .requiredOption('--hidden <n>', 'hidden size')
    .requiredOption('--layers <n>', 'number of decoder layers')
    .requiredOption('--heads <n>', 'attention heads')
    .option('--kv-heads <n>', 'key/value heads (grouped-query attention; default = heads)')
    .option('--vocab <n>', 'vocabulary size (≥ 256 for the byte tokenizer, 258 adds <s> and </s>)', '258')
    .option('--intermediate <n>', 'MLP width (default: Llama rule, ≈ 8/3 · hidden)')
    .option('--head-dim <n>', 'per-head width (default hidden / heads)')
    .option('--rope-theta <x>', 'RoPE base', '10000')
    .option('--rms-norm-eps <x>', 'RMSNorm epsilon', '1e-6')
    .option('--max-positions <n>', 'max_position_embeddings', '2048')
    .option('--seed <n>', 'random seed of the weights', '0')
    .option('--tie', 'tie lm_head to the input embedding')
    .option('--rope-scaling <type>', "RoPE scaling: llama3 (Llama 3.2's factors)")
    .option('--dtype <dtype>', 'stored dtype of the weights: f32, f16 or bf16', 'f32')
    .option('--max-shard-size <size>', 'write safetensors shards of at most this size (e.g. 2GB) with an index')
    .option('--no-tokenizer', 'do not write the byte tokenizer')
    .option('--force', 'overwrite model files in a non-empty --out')
    .requiredOption('--out <dir>', 'output directory')
    .action(async (o: InitModelOptions) => {
      const { parameters, tokenizer } = await initModel(o);
      const note = tokenizer
        ? ' + byte tokenizer'
        : o.tokenizer
          ? ' (no tokenizer: --vocab < 256, use input_ids data)'
          : '';
      console.error(`chorus: wrote ${o.out} (llama, ${parameters.toLocaleString('en-US')} parameters${note})`);
    });
}
