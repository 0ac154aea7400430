import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadJsonl, needsTokenizer, parseJsonl, type Example } from '../../shared/data/dataset.ts';
import { BatchStream, makeBatches, shardExamples, type Batch } from '../../shared/data/batches.ts';
import { epochPermutation } from '../../shared/data/random.ts';
import { ByteTokenizer, type Tokenizer } from '../../shared/data/tokenizer.ts';
import { ChorusError } from '../../shared/errors.ts';

const bytes = new ByteTokenizer(258);
const utf8 = (s: string) => [...new TextEncoder().encode(s)];

test('{"text"}: BOS + bytes + EOS, every predicted token is a target', () => {
  const [ex] = parseJsonl('{"text": "hé"}\n', 'd.jsonl', { tokenizer: bytes });
  assert.deepEqual([...ex.inputIds], [256, ...utf8('hé'), 257]);
  assert.deepEqual([...ex.lossMask], [0, 1, 1, 1, 1]);
  assert.equal(ex.kind, 'text');
  const [noSpecial] = parseJsonl('{"text": "abc"}', 'd', { tokenizer: bytes, addBos: false, addEos: false });
  assert.deepEqual([...noSpecial.inputIds], utf8('abc'));
  assert.deepEqual([...noSpecial.lossMask], [0, 1, 1]);
});

test('{"prompt","completion"}: loss only on the completion (and EOS)', () => {
  const [ex] = parseJsonl('{"prompt": "Q: 2+2=", "completion": " 4"}', 'd', { tokenizer: bytes });
  const p = utf8('Q: 2+2=');
  assert.deepEqual([...ex.inputIds], [256, ...p, ...utf8(' 4'), 257]);
  assert.equal(ex.completionStart, 1 + p.length);
  const expectMask = [0, ...p.map(() => 0), 1, 1, 1];
  assert.deepEqual([...ex.lossMask], expectMask);
  assert.equal(ex.kind, 'completion');
});

test('prompt/completion boundary: joint tokenisation when the prompt is a prefix, else concatenation', () => {
  // A toy tokenizer with one merge ("ab" → 300) and words "xy" → 301: enough to exercise both paths.
  const toy: Tokenizer = {
    kind: 'hf',
    vocabSize: 400,
    padId: 0,
    encode(text: string) {
      const out: number[] = [];
      for (let i = 0; i < text.length; i++) {
        if (text.startsWith('ab', i)) {
          out.push(300);
          i++;
        } else out.push(text.charCodeAt(i));
      }
      return out;
    },
    decode: () => '',
  };
  const [split] = parseJsonl('{"prompt": "za", "completion": "bq"}', 'd', { tokenizer: toy });
  // "zabq" would merge across the boundary; the prompt's tokens are not a prefix → concatenation.
  assert.deepEqual([...split.inputIds], [122, 97, 98, 113]);
  assert.deepEqual([...split.lossMask], [0, 0, 1, 1]);
  const [joint] = parseJsonl('{"prompt": "ab", "completion": "abc"}', 'd', { tokenizer: toy });
  assert.deepEqual([...joint.inputIds], [300, 300, 99]);
  assert.deepEqual([...joint.lossMask], [0, 1, 1]);
});

test('{"input_ids"}: verbatim ids, optional loss_mask, no tokenizer needed, checked against the vocab', () => {
  const exs = parseJsonl('{"input_ids": [5, 6, 7]}\n\n{"input_ids": [1, 2, 3, 4], "loss_mask": [1, 0, 1, 1]}\n', 'd', {
    vocabSize: 8,
  });
  assert.deepEqual([...exs[0].inputIds], [5, 6, 7]);
  assert.deepEqual([...exs[0].lossMask], [0, 1, 1]);
  assert.deepEqual([...exs[1].lossMask], [0, 0, 1, 1]);
  assert.ok(!needsTokenizer('{"input_ids": [1, 2]}\n\n{"input_ids": [3, 4]}'));
  assert.ok(needsTokenizer('{"input_ids": [1, 2]}\n{"text": "x"}'));
});

test('bad lines give errors naming the file and line', async () => {
  const bad = (text: string, re: RegExp, opts = {}) =>
    assert.throws(
      () => parseJsonl(text, 'data.jsonl', opts),
      (e: Error) => {
        assert.ok(e instanceof ChorusError, String(e));
        assert.match(e.message, re);
        return true;
      },
    );
  bad('{"text": "a"}\n{"text": oops}\n', /^data\.jsonl:2: not valid JSON/, { tokenizer: bytes });
  bad('\n\n[1, 2]\n', /^data\.jsonl:3: each line must be a JSON object/);
  bad('{"txt": "a"}', /^data\.jsonl:1: expected an object with "text", "prompt" and "completion", or "input_ids"/);
  bad('{"text": 5}', /^data\.jsonl:1: "text" must be a string/, { tokenizer: bytes });
  bad('{"text": "a"}', /^data\.jsonl:1: "text" needs a tokenizer/);
  bad('{"prompt": "a"}', /^data\.jsonl:1: "completion" must be a string/, { tokenizer: bytes });
  bad(
    '{"input_ids": [1, 2.5]}',
    /^data\.jsonl:1: "input_ids"\[1\] must be a non-negative integer \(got a number with a fraction\)/,
  );
  bad('{"input_ids": [1, 9]}', /^data\.jsonl:1: "input_ids"\[1\] is outside the vocabulary \(size 8\)/, {
    vocabSize: 8,
  });
  bad('{"input_ids": [1]}', /^data\.jsonl:1: only 1 token\(s\): nothing to predict/);
  bad('{"input_ids": [1, 2], "loss_mask": [1]}', /"loss_mask" must be an array of 0\/1 as long as "input_ids" \(2\)/);
  bad('{"prompt": "a", "completion": ""}', /^data\.jsonl:1: the completion is empty/, {
    tokenizer: bytes,
    addEos: false,
  });
  bad('{"text": "é"}', /token id 195 from the tokenizer is outside the model's vocabulary \(size 100\)/, {
    tokenizer: bytes,
    vocabSize: 100,
    addBos: false,
  });
  bad('\n  \n', /^data\.jsonl: no examples/);
  const dir = await mkdtemp(join(tmpdir(), 'ds-'));
  try {
    await assert.rejects(loadJsonl(join(dir, 'missing.jsonl')), /missing\.jsonl: data file not found/);
    await writeFile(join(dir, 'ok.jsonl'), '{"text": "hi"}\n');
    assert.equal((await loadJsonl(join(dir, 'ok.jsonl'), { tokenizer: bytes })).length, 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

function idsExamples(n: number, len: (i: number) => number): Example[] {
  return Array.from({ length: n }, (_, i) => {
    const L = len(i);
    const mask = new Uint8Array(L).map((_, t) => (t === 0 ? 0 : (t + i) % 3 === 0 ? 0 : 1));
    return { inputIds: Int32Array.from({ length: L }, (_, t) => 1000 * i + t), lossMask: mask, kind: 'ids' as const };
  });
}

/** Independent expectation for one row: position t of example e in a [*, T] batch. */
function checkRow(batch: Batch, r: number, ex: Example, padId: number): void {
  const T = batch.seqLen;
  for (let t = 0; t < T; t++) {
    const id = batch.inputIds[r * T + t];
    const m = batch.targetMask[r * T + t];
    if (t < ex.inputIds.length) {
      assert.equal(id, ex.inputIds[t]);
      assert.equal(m, t === 0 ? 0 : ex.lossMask[t]);
    } else {
      assert.equal(id, padId);
      assert.equal(m, 0);
    }
  }
}

test('makeBatches: one epoch covers every example once; truncation and padding are masked', () => {
  const exs = idsExamples(11, (i) => 2 + (i % 7));
  const batches = makeBatches(exs, { batchSize: 4, seqLen: 5, padId: 99, seed: 7 });
  assert.deepEqual(
    batches.map((b) => b.batchSize),
    [4, 4, 3],
  );
  const seen = batches.flatMap((b) => b.exampleIndices).sort((a, b) => a - b);
  assert.deepEqual(
    seen,
    Array.from({ length: 11 }, (_, i) => i),
  );
  for (const b of batches) {
    assert.equal(b.inputIds.length, b.batchSize * 5);
    b.exampleIndices.forEach((e, r) => checkRow(b, r, exs[e], 99));
  }
  // Same seed and epoch → same order; another epoch or seed → another order.
  const again = makeBatches(exs, { batchSize: 4, seqLen: 5, padId: 99, seed: 7 });
  assert.deepEqual(
    again.map((b) => b.exampleIndices),
    batches.map((b) => b.exampleIndices),
  );
  const e1 = makeBatches(exs, { batchSize: 4, seqLen: 5, padId: 99, seed: 7, epochOffset: 1 });
  assert.notDeepEqual(
    e1.map((b) => b.exampleIndices),
    batches.map((b) => b.exampleIndices),
  );
  const unshuffled = makeBatches(exs, { batchSize: 4, seqLen: 5, padId: 99, seed: 7, shuffle: false });
  assert.deepEqual(
    unshuffled.flatMap((b) => b.exampleIndices),
    Array.from({ length: 11 }, (_, i) => i),
  );
  assert.throws(
    () => makeBatches(exs, { batchSize: 0, seqLen: 5, padId: 0, seed: 1 }),
    /batchSize must be a positive integer/,
  );
});

test('BatchStream: full batches across epochs; a cursor resumes the identical sequence', () => {
  const exs = idsExamples(10, (i) => 3 + (i % 4));
  const opts = { batchSize: 4, seqLen: 6, padId: 0, seed: 123 };
  const s = new BatchStream(exs, opts);
  const seq: Batch[] = [];
  let saved = s.cursor;
  for (let i = 0; i < 12; i++) {
    if (i === 5) saved = s.cursor;
    seq.push(s.next());
  }
  assert.deepEqual(saved, { epoch: 2, index: 0 }); // 5 batches × 4 = 20 = two epochs of 10
  // Each epoch is a permutation of all examples.
  const flat = seq.flatMap((b) => b.exampleIndices);
  for (let e = 0; e < 4; e++)
    assert.deepEqual(
      flat.slice(10 * e, 10 * e + 10).sort((a, b) => a - b),
      [...Array(10).keys()],
    );
  assert.deepEqual(flat.slice(0, 10), [...epochPermutation(10, 123, 0)]);
  const resumed = new BatchStream(exs, opts, saved);
  for (let i = 5; i < 12; i++) {
    const b = resumed.next();
    assert.deepEqual(b.exampleIndices, seq[i].exampleIndices);
    assert.deepEqual(b.inputIds, seq[i].inputIds);
    assert.deepEqual(b.targetMask, seq[i].targetMask);
  }
  // A cursor in mid-epoch, through JSON (as a checkpoint stores it).
  const s2 = new BatchStream(exs, opts);
  s2.next();
  s2.next();
  s2.next();
  const mid = JSON.parse(JSON.stringify(s2.cursor));
  assert.deepEqual(mid, { epoch: 1, index: 2 });
  assert.deepEqual(new BatchStream(exs, opts, mid).next().exampleIndices, seq[3].exampleIndices);
  assert.throws(() => new BatchStream(exs, opts, { epoch: 0, index: 11 }), /invalid cursor/);
});

test('shuffle is uniform over permutations (n = 4, 24 000 epochs)', () => {
  const counts = new Map<string, number>();
  for (let e = 0; e < 24000; e++) {
    const k = epochPermutation(4, 9, e).join('');
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  assert.equal(counts.size, 24);
  // Expected 1000 each; σ ≈ 31, so ±200 is a > 6σ band.
  for (const [k, c] of counts) assert.ok(c > 800 && c < 1200, `${k}: ${c}`);
});

test('shardExamples: disjoint, covering, balanced', () => {
  const items = Array.from({ length: 23 }, (_, i) => i);
  const shards = [0, 1, 2, 3, 4].map((r) => shardExamples(items, r, 5));
  assert.deepEqual(
    shards.flat().sort((a, b) => a - b),
    items,
  );
  assert.equal(new Set(shards.flat()).size, 23);
  const sizes = shards.map((s) => s.length);
  assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1);
  assert.throws(() => shardExamples(items, 5, 5), /replica must be an integer in \[0, 5\)/);
  assert.throws(() => shardExamples([1, 2], 0, 3), /2 examples cannot feed 3 replicas/);
});

test('prompt/completion through a real BPE tokenizer.json with a merge (HF library path)', async () => {
  const { writeByteTokenizer, loadTokenizer } = await import('../../shared/data/tokenizer.ts');
  const { readFile } = await import('node:fs/promises');
  const dir = await mkdtemp(join(tmpdir(), 'ds-bpe-'));
  try {
    await writeByteTokenizer(dir, 258);
    const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
    json.model.vocab.ab = 258;
    json.model.merges = ['a b'];
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(json));
    const cfg = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
    delete cfg.chorus_tokenizer;
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
    const tok = await loadTokenizer(dir, 300);
    assert.deepEqual(tok.encode('xab'), [120, 258]);
    const [joint, split] = parseJsonl('{"prompt": "x", "completion": "ab"}\n{"prompt": "xa", "completion": "b"}', 'd', {
      tokenizer: tok,
      vocabSize: 300,
    });
    assert.deepEqual([...joint.inputIds], [256, 120, 258, 257]);
    assert.deepEqual([...joint.lossMask], [0, 0, 1, 1]);
    // "xab" would merge across the boundary, so the prompt's tokens [x, a] stay and "b" follows.
    assert.deepEqual([...split.inputIds], [256, 120, 97, 98, 257]);
    assert.deepEqual([...split.lossMask], [0, 0, 0, 1, 1]);
    assert.equal(split.completionStart, 3);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
