// Generation scores: edit distance/similarity on hand-checked pairs, and exact match / edit
// similarity of the committed demo base on prompts whose greedy answers were checked by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine } from '../../shared/tensor/engine.ts';
import { loadBaseModel } from '../../shared/train/load.ts';
import { ByteTokenizer } from '../../shared/data/tokenizer.ts';
import { parseJsonl } from '../../shared/data/dataset.ts';
import { completionItems, editDistance, editSimilarity, scoreGeneration } from '../../shared/eval/score.ts';

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

test('edit distance and similarity, checked by hand', () => {
  assert.equal(editDistance('kitten', 'sitting'), 3); // k→s, e→i, +g
  assert.equal(editDistance('flaw', 'lawn'), 2); // −f, +n
  assert.equal(editDistance('', 'abc'), 3);
  assert.equal(editDistance('abc', ''), 3);
  assert.equal(editDistance('abc', 'abc'), 0);
  assert.equal(editDistance('ab', 'ba'), 2); // no transpositions in Levenshtein
  assert.equal(editDistance('héllo', 'hello'), 1); // code points, not UTF-16 units or bytes
  assert.equal(editDistance('a😀b', 'ab'), 1);
  close(editSimilarity('kitten', 'sitting'), 1 - 3 / 7);
  close(editSimilarity('CBA', 'CBX'), 2 / 3);
  close(editSimilarity('', ''), 1);
  close(editSimilarity('', 'ab'), 0);
  close(editSimilarity('ccb', 'CBA'), 0); // case matters
});

test('the demo base: exact match and edit similarity over hand-checked greedy answers', async () => {
  await initEngine('wasm', { quiet: true });
  const model = await loadBaseModel(new URL('../../demo/base', import.meta.url).pathname);
  const tok = new ByteTokenizer(256);
  // The base answers rev:abc= "cba", up:hello= "HELLO", copy:xyz= "xyz", revup:abc= "ccb" (wrong rule).
  const items = [
    { prompt: 'rev:abc=', reference: 'cba\n' }, // exact, similarity 1
    { prompt: 'up:hello=', reference: 'HELLX\n' }, // the reference differs in one of 5 letters: 0.8
    { prompt: 'copy:xyz=', reference: 'xyz\n' }, // exact
    { prompt: 'revup:abc=', reference: 'CBA\n' }, // "ccb" vs "CBA": 0
  ].map((x) => ({ prompt: tok.encode(x.prompt), reference: x.reference }));
  try {
    const g = scoreGeneration(model, items, { tokenizer: tok, maxNewTokens: 8, stop: ['\n'] });
    assert.deepEqual(
      g.outputs.map((o) => o.prediction),
      ['cba', 'HELLO', 'xyz', 'ccb'],
    );
    assert.deepEqual(
      g.outputs.map((o) => o.reference),
      ['cba', 'HELLX', 'xyz', 'CBA'],
    );
    close(g.exactMatch, 0.5);
    close(g.editSimilarity, (1 + 0.8 + 1 + 0) / 4);
    assert.equal(g.examples, 4);
    // Without the stop string the answer runs on to maxNewTokens and no longer matches.
    const long = scoreGeneration(model, items.slice(0, 1), { tokenizer: tok, maxNewTokens: 8 });
    assert.equal(long.outputs[0].prediction.length, 8);
    assert.equal(long.exactMatch, 0);
  } finally {
    model.dispose();
  }
});

test('completion items: prompt tokens before the completion, the completion decoded; others refused', () => {
  const tok = new ByteTokenizer(258); // with BOS 256 and EOS 257
  const ex = parseJsonl('{"prompt":"ab=","completion":"ba"}\n{"text":"hello"}\n', 'd.jsonl', { tokenizer: tok });
  const items = completionItems(ex, tok, 'd.jsonl');
  assert.equal(items.length, 1);
  assert.deepEqual(Array.from(items[0].prompt), [256, ...Buffer.from('ab=')]);
  assert.equal(items[0].reference, 'ba'); // EOS dropped by the decoder
  const text = parseJsonl('{"text":"hello"}\n', 'd.jsonl', { tokenizer: tok });
  assert.throws(() => completionItems(text, tok, 'd.jsonl'), /d\.jsonl: generation needs \{"prompt","completion"\}/);
});
