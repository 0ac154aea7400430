// The demo base model reads bytes: token id = byte value (vocab 256, no special tokens). Its
// tokenizer.json is a byte-level BPE with no merges whose vocab is ordered so that the id of each
// byte's GPT-2 unicode stand-in is the byte itself, so HF tokenizers and a plain byte tokenizer agree.

/** GPT-2's bytes_to_unicode table: printable stand-ins for the 256 byte values. */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let i = 33; i <= 126; i++) bs.push(i);
  for (let i = 161; i <= 172; i++) bs.push(i);
  for (let i = 174; i <= 255; i++) bs.push(i);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out: string[] = new Array(256);
  bs.forEach((b, i) => (out[b] = String.fromCharCode(cs[i])));
  return out;
}

export function byteTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((c, b) => (vocab[c] = b));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
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
}

const enc = new TextEncoder();
const dec = new TextDecoder();
export const encodeBytes = (text: string): number[] => [...enc.encode(text)];
export const decodeBytes = (ids: number[]): string => dec.decode(Uint8Array.from(ids));
