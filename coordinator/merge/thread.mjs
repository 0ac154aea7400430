// piscina entry of the coordinator's merge threads (tsx registered here: Node 20 worker threads do
// not inherit the main thread's loader hooks).
import { register } from 'tsx/esm/api';
register();
const { runMergeTask } = await import('./task.ts');
export default runMergeTask;
