// An independent greedy exact-match scorer for the demo's byte-level tasks: batched, full forward
// passes over the whole prefix each step (no KV cache, no shared/eval code), so the demo's printed
// figures (shared/eval/score.ts with its KV cache) are checked against a second computation.
import { tf } from '../../shared/tensor/engine.ts';
import type { LlamaModel, LoraProvider } from '../../shared/model/llama.ts';
import { MAX_LEN, type Example } from '../../demo/tasks.ts';

const NEWLINE = 10;

/** Correct answers: greedy bytes until "\n" (at most MAX_LEN + 1), equal to the completion's line. */
export function greedyCorrect(model: LlamaModel, examples: Example[], lora?: LoraProvider): number {
  const V = model.config.vocabSize;
  const prompts = examples.map((e) => [...Buffer.from(e.prompt, 'latin1')]);
  const answers = examples.map(() => [] as number[]);
  const done = examples.map(() => false);
  for (let step = 0; step <= MAX_LEN && !done.every(Boolean); step++) {
    const rows = prompts.map((p, i) => [...p, ...answers[i]]);
    const T = Math.max(...rows.map((r) => r.length));
    const ids = rows.flatMap((r) => [...r, ...new Array<number>(T - r.length).fill(0)]);
    const logits = tf.tidy(
      () => model.forward(tf.tensor2d(ids, [rows.length, T], 'int32'), lora ? { lora } : {}).dataSync() as Float32Array,
    );
    rows.forEach((r, i) => {
      if (done[i]) return;
      // Causal attention: the padding after row i's prefix does not reach its last position.
      const off = (i * T + r.length - 1) * V;
      let best = 0;
      for (let v = 1; v < V; v++) if (logits[off + v] > logits[off + best]) best = v;
      if (best === NEWLINE) done[i] = true;
      else answers[i].push(best);
    });
  }
  return examples.filter((e, i) => Buffer.from(answers[i]).toString('latin1') === e.completion.split('\n')[0]).length;
}
