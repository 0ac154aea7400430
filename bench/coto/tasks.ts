// The benchmark's tasks: held-out string rules over the demo base's format (`<op>:<input>=` →
// `<output>\n`), each a composition of the base's own ops (copy, up, rev, rotl) that the base was
// never shown. Four are needed for the multi-task merge; they are chosen (with few steps and little
// data) so that single-task exact match lands between the floor and the ceiling, where arms can
// differ. Data comes from demo/tasks.ts's seeded generator, in memory (nothing is written).
import { parseJsonl, type Example as TokenExample } from '../../shared/data/dataset.ts';
import { ByteTokenizer } from '../../shared/data/tokenizer.ts';
import { generate, inputOf, TASK_OPS, type Example, type Op } from '../../demo/tasks.ts';

const upper = (s: string) => s.toUpperCase();
const reverse = (s: string) => [...s].reverse().join('');
const rotl = (s: string) => s.slice(1) + s[0];

/** Compositions the base has not seen: the demo's three, and a three-rule one. */
export const BENCH_OPS: Op[] = [
  ...TASK_OPS,
  {
    name: 'rotrevup',
    description: 'move the first letter to the end, reverse, upper-case',
    apply: (s) => upper(reverse(rotl(s))),
  },
];

export interface BenchTask {
  name: string;
  train: TokenExample[];
  /** The same training examples as text (what a cluster job reads from a JSONL file). */
  trainText: Example[];
  /** Held-out examples (inputs never in train) for exact match and loss. */
  eval: Example[];
  evalTokens: TokenExample[];
}

const bytes = new ByteTokenizer(256);

function tokens(examples: Example[], source: string): TokenExample[] {
  return parseJsonl(examples.map((e) => JSON.stringify(e)).join('\n'), source, { tokenizer: bytes });
}

/** Train/eval sets per task, disjoint inputs, deterministic from `seed`. */
export function makeTasks(opts: { train: number; eval: number; seed: number }): BenchTask[] {
  return BENCH_OPS.map((op) => {
    const evalSet = generate(op, opts.eval, opts.seed + 1);
    const train = generate(op, opts.train, opts.seed, new Set(evalSet.map(inputOf)));
    return {
      name: op.name,
      train: tokens(train, `${op.name}.train`),
      trainText: train,
      eval: evalSet,
      evalTokens: tokens(evalSet, `${op.name}.eval`),
    };
  });
}
