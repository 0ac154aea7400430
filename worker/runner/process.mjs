// Entry of a GPU runner process (one per device: libtensorflow reads CUDA_VISIBLE_DEVICES once).
import { register } from 'tsx/esm/api';
register();
const { runInProcess } = await import('./entry.ts');
await runInProcess();
