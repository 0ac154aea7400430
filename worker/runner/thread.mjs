// piscina entry of a CPU runner thread. Worker threads do not inherit the main thread's tsx
// loader hooks on Node 20, so the thread registers tsx itself before loading the TypeScript.
import { register } from 'tsx/esm/api';
register();
const { runInThread } = await import('./entry.ts');
export default runInThread;
