// Child process for the cross-process reproducibility test: prints the masks of a (seed, steps)
// grid as JSON, computed from scratch in a fresh Node process.
import { activeLayersAt, COTO_DEFAULTS } from '../../shared/coto/schedule.ts';

const [seed, total, layers] = process.argv.slice(2).map(Number);
const masks: boolean[][] = [];
for (let step = 0; step < total; step++) masks.push(activeLayersAt(COTO_DEFAULTS, seed, step, total, layers));
process.stdout.write(JSON.stringify(masks));
