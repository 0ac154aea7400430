import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as LibTokenizer } from '@huggingface/tokenizers';
import { ByteTokenizer, HfTokenizer, loadTokenizer, writeByteTokenizer } from '../../shared/data/tokenizer.ts';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tok-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const samples = [
  'Hello world',
  '  leading and trailing spaces  ',
  'tabs\tand\nnewlines\r\n',
  "it's 3.14 — don't",
  'naïve café Ωμέγα',
  '日本語のテキスト',
  'emoji 😀👍🏽',
  '\u0000\u0001\u007f control',
  'a'.repeat(50),
  '',
];

test('byte tokenizer: ids are UTF-8 bytes, specials at 256/257 only when the vocab has room', () => {
  const t = new ByteTokenizer(300);
  assert.deepEqual(t.encode('aé'), [0x61, 0xc3, 0xa9]);
  assert.equal(t.bosId, 256);
  assert.equal(t.eosId, 257);
  assert.equal(t.padId, 257);
  assert.equal(t.vocabSize, 300);
  assert.equal(t.decode([256, 0x61, 0xc3, 0xa9, 257]), 'aé');
  for (const s of samples) assert.equal(t.decode(t.encode(s)), s);
  const small = new ByteTokenizer(256);
  assert.equal(small.bosId, undefined);
  assert.equal(small.eosId, undefined);
  assert.equal(small.padId, 0);
  assert.throws(() => new ByteTokenizer(255), /vocab_size must be an integer ≥ 256/);
});

test('the written tokenizer.json gives the byte tokenizer ids through @huggingface/tokenizers', () =>
  withDir(async (dir) => {
    await writeByteTokenizer(dir, 258);
    const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
    assert.equal(config.chorus_tokenizer, 'bytes');
    const lib = new LibTokenizer(json, config);
    const bytes = new ByteTokenizer(258);
    for (const s of samples) {
      assert.deepEqual(lib.encode(s, { add_special_tokens: false }).ids, bytes.encode(s), JSON.stringify(s));
      // With special tokens the post-processor prepends <s>, as the dataset code does.
      assert.deepEqual(lib.encode(s).ids, [256, ...bytes.encode(s)], JSON.stringify(s));
      if (s !== '') assert.equal(lib.decode(bytes.encode(s)), s, JSON.stringify(s));
    }
    assert.equal(lib.token_to_id('</s>'), 257);
  }));

test('loadTokenizer: byte marker, HF tokenizer.json, vocab checks, missing tokenizer', () =>
  withDir(async (dir) => {
    await writeByteTokenizer(dir, 258);
    const viaMarker = await loadTokenizer(dir, 512);
    assert.equal(viaMarker.kind, 'bytes');
    assert.equal(viaMarker.vocabSize, 512);

    // Without the marker the same directory goes through the HF library, with the same ids.
    const cfg = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
    delete cfg.chorus_tokenizer;
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
    const hf = await loadTokenizer(dir, 258);
    assert.ok(hf instanceof HfTokenizer);
    assert.equal(hf.vocabSize, 258);
    assert.equal(hf.bosId, 256);
    assert.equal(hf.eosId, 257);
    assert.equal(hf.padId, 257);
    for (const s of samples) {
      assert.deepEqual(hf.encode(s), viaMarker.encode(s));
      assert.equal(hf.decode(hf.encode(s)), s);
    }
    assert.equal(hf.decode([256, ...hf.encode('héllo'), 257]), 'héllo');
    await assert.rejects(loadTokenizer(dir, 100), /tokenizer has ids up to 257 but the model's vocab_size is 100/);

    // tokenizer.json alone (no tokenizer_config.json): loads, without BOS/EOS, padding 0.
    await rm(join(dir, 'tokenizer_config.json'));
    const bare = await loadTokenizer(dir);
    assert.equal(bare.kind, 'hf');
    assert.equal(bare.bosId, undefined);
    assert.equal(bare.padId, 0);
    assert.deepEqual(bare.encode('ok'), [111, 107]);

    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ chorus_tokenizer: 'words' }));
    await assert.rejects(loadTokenizer(dir), /"chorus_tokenizer" must be "bytes"/);
    await rm(join(dir, 'tokenizer_config.json'));
    await rm(join(dir, 'tokenizer.json'));
    await assert.rejects(loadTokenizer(dir), /no tokenizer.json.*input_ids/);
  }));
