// Tokenizers: Hugging Face tokenizer.json through @huggingface/tokenizers, and a built-in byte
// tokenizer for tiny models.
//
// Byte tokenizer ids: 0..255 are the UTF-8 bytes. When the model's vocabulary has room
// (vocab ≥ 258), 256 is <s> (BOS) and 257 is </s> (EOS, also used as padding); with vocab 256
// or 257 there are no special tokens and padding uses id 0 (padding is always masked out).
//
// loadTokenizer(modelDir) decides as follows:
//   1. tokenizer_config.json has "chorus_tokenizer": "bytes" → the built-in byte tokenizer. Such
//      directories (written by writeByteTokenizer) also hold a real byte-level BPE tokenizer.json
//      that gives the same ids in HF tokenizers, so the marker only skips a library load.
//   2. tokenizer.json exists → @huggingface/tokenizers with tokenizer_config.json.
//   3. otherwise → error (data given as input_ids needs no tokenizer; callers skip loading).
//
// encode() never adds special tokens: the dataset code adds BOS/EOS itself, the same way for
// every tokenizer.

import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';
import { ChorusError } from '../errors.ts';
import { jsonSyntaxError } from '../json-error.ts';

export interface Tokenizer {
  /** Token ids of `text`, without special tokens. */
  encode(text: string): number[];
  /** Text of `ids`; special tokens are dropped. */
  decode(ids: ArrayLike<number>): string;
  /** Ids are < vocabSize. */
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId: number;
  readonly kind: 'bytes' | 'hf';
}

const BYTE_BOS_ID = 256;
const BYTE_EOS_ID = 257;

export class ByteTokenizer implements Tokenizer {
  readonly kind = 'bytes' as const;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId: number;

  constructor(readonly vocabSize: number = 258) {
    if (!Number.isInteger(vocabSize) || vocabSize < 256) {
      throw new ChorusError(`byte tokenizer: the model's vocab_size must be an integer ≥ 256 (got ${vocabSize})`);
    }
    if (vocabSize >= 258) {
      this.bosId = BYTE_BOS_ID;
      this.eosId = BYTE_EOS_ID;
    }
    this.padId = this.eosId ?? 0;
  }

  encode(text: string): number[] {
    return Array.from(new TextEncoder().encode(text));
  }

  decode(ids: ArrayLike<number>): string {
    const bytes: number[] = [];
    for (let i = 0; i < ids.length; i++) if (ids[i] >= 0 && ids[i] < 256) bytes.push(ids[i]);
    return new TextDecoder().decode(new Uint8Array(bytes));
  }
}

/** GPT-2's byte → printable character table used by ByteLevel pre-tokenizers and decoders. */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const map = new Array<string>(256);
  for (const b of bs) map[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (map[b] === undefined) map[b] = String.fromCharCode(256 + n++);
  return map;
}

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return undefined;
}

/** A tokenizer.json loaded through @huggingface/tokenizers. */
export class HfTokenizer implements Tokenizer {
  readonly kind = 'hf' as const;
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId: number;
  private readonly impl: HfTokenizerImpl;

  constructor(tokenizerJson: object, tokenizerConfig: Record<string, unknown>, source: string) {
    try {
      this.impl = new HfTokenizerImpl(tokenizerJson, tokenizerConfig);
    } catch (err) {
      throw new ChorusError(`${source}: cannot load tokenizer (${(err as Error).message})`);
    }
    let max = -1;
    for (const id of this.impl.get_vocab(true).values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    const idOf = (field: string): number | undefined => {
      const content = tokenContent(tokenizerConfig[field]);
      return content === undefined ? undefined : this.impl.token_to_id(content);
    };
    this.bosId = idOf('bos_token');
    this.eosId = idOf('eos_token');
    this.padId = idOf('pad_token') ?? this.eosId ?? 0;
  }

  encode(text: string): number[] {
    return this.impl.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: ArrayLike<number>): string {
    // The library rejects an empty id list.
    return ids.length === 0 ? '' : this.impl.decode(Array.from(ids), { skip_special_tokens: true });
  }
}

async function readJsonIfExists(path: string): Promise<unknown | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ChorusError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ChorusError(`${path}: ${jsonSyntaxError(err)}`);
  }
}

/**
 * The tokenizer of a model directory (see the rules at the top of this file). `modelVocabSize`
 * (config.json's vocab_size) sizes the byte tokenizer and is checked against HF tokenizers.
 */
export async function loadTokenizer(modelDir: string, modelVocabSize?: number): Promise<Tokenizer> {
  const cfgPath = join(modelDir, 'tokenizer_config.json');
  const cfg = await readJsonIfExists(cfgPath);
  if (cfg !== undefined && (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg))) {
    throw new ChorusError(`${cfgPath}: must be a JSON object`);
  }
  const config = (cfg ?? {}) as Record<string, unknown>;
  if (config.chorus_tokenizer !== undefined) {
    if (config.chorus_tokenizer !== 'bytes') {
      throw new ChorusError(
        `${cfgPath}: "chorus_tokenizer" must be "bytes" (got ${JSON.stringify(config.chorus_tokenizer)})`,
      );
    }
    return new ByteTokenizer(modelVocabSize ?? 258);
  }
  const tokPath = join(modelDir, 'tokenizer.json');
  const json = await readJsonIfExists(tokPath);
  if (json === undefined) {
    const hasSp = await stat(join(modelDir, 'tokenizer.model')).then(
      () => true,
      () => false,
    );
    throw new ChorusError(
      `${modelDir}: no tokenizer.json` +
        (hasSp ? ' (only a SentencePiece tokenizer.model, which is not supported: convert it to tokenizer.json)' : '') +
        '; give data as {"input_ids": [...]} or add a tokenizer',
    );
  }
  if (json === null || typeof json !== 'object') throw new ChorusError(`${tokPath}: must be a JSON object`);
  const tok = new HfTokenizer(json, config, tokPath);
  if (modelVocabSize !== undefined && tok.vocabSize > modelVocabSize) {
    throw new ChorusError(
      `${tokPath}: tokenizer has ids up to ${tok.vocabSize - 1} but the model's vocab_size is ${modelVocabSize}`,
    );
  }
  return tok;
}

/**
 * Writes a byte-level BPE tokenizer.json with no merges (ids = bytes, plus <s>/</s> at 256/257
 * when vocab ≥ 258) and a tokenizer_config.json carrying the "chorus_tokenizer": "bytes" marker.
 * HF tokenizers/transformers read it as a normal fast tokenizer; its post-processor prepends <s>
 * like Llama 3's, matching what the dataset code adds.
 */
export async function writeByteTokenizer(dir: string, vocabSize = 258): Promise<void> {
  const byteTok = new ByteTokenizer(vocabSize);
  const chars = bytesToUnicode();
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[chars[b]] = b;
  const special = byteTok.bosId !== undefined;
  const added = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special ? [added(BYTE_BOS_ID, '<s>'), added(BYTE_EOS_ID, '</s>')] : [],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: special
      ? {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [
            { SpecialToken: { id: '<s>', type_id: 0 } },
            { Sequence: { id: 'A', type_id: 0 } },
            { SpecialToken: { id: '<s>', type_id: 1 } },
            { Sequence: { id: 'B', type_id: 1 } },
          ],
          special_tokens: { '<s>': { id: '<s>', ids: [BYTE_BOS_ID], tokens: ['<s>'] } },
        }
      : null,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
  const config: Record<string, unknown> = {
    chorus_tokenizer: 'bytes',
    tokenizer_class: 'PreTrainedTokenizerFast',
    model_max_length: 1_000_000,
    clean_up_tokenization_spaces: false,
  };
  if (special) Object.assign(config, { bos_token: '<s>', eos_token: '</s>', pad_token: '</s>' });
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer, null, 1) + '\n');
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
  if (special) {
    await writeFile(
      join(dir, 'special_tokens_map.json'),
      JSON.stringify({ bos_token: '<s>', eos_token: '</s>', pad_token: '</s>' }, null, 2) + '\n',
    );
  }
}
