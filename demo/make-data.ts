// Writes the demo's task data (demo/data/<task>.{train,eval}.jsonl), deterministically from a seed:
//   node --import tsx demo/make-data.ts [--out demo/data] [--seed 1] [--train 2000] [--eval 100]
// The files are committed; test/demo/tasks.test.ts checks that this script reproduces them.
import { parseArgs } from 'node:util';
import { TASK_OPS, writeTaskData } from './tasks.ts';

export const DATA_DEFAULTS = { seed: 1, train: 2000, eval: 100 };

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: new URL('./data', import.meta.url).pathname },
      seed: { type: 'string', default: String(DATA_DEFAULTS.seed) },
      train: { type: 'string', default: String(DATA_DEFAULTS.train) },
      eval: { type: 'string', default: String(DATA_DEFAULTS.eval) },
    },
  });
  const files = writeTaskData(
    values.out!,
    TASK_OPS.map((o) => o.name),
    {
      seed: Number(values.seed),
      train: Number(values.train),
      eval: Number(values.eval),
    },
  );
  for (const f of files) console.log(`${f.task}: ${f.train}, ${f.eval}`);
}
