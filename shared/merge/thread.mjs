// piscina entry of the merge threads (tsx registered here: Node 20 worker threads do not inherit the
// main thread's loader hooks).
import { register } from 'tsx/esm/api';
register();
const { runInThread } = await import('./module-job.ts');
export default runInThread;
