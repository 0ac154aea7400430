// piscina entry of the merge threads. In dist/ (npm run build) the compiled
// .js sits beside this file; in a source checkout the .ts runs through tsx, registered here because
// Node 20 worker threads and forked processes do not inherit the parent's loader hooks.
import { existsSync } from 'node:fs';
const built = new URL('./module-job.js', import.meta.url);
if (!existsSync(built)) (await import('tsx/esm/api')).register();
const { runInThread } = await import(existsSync(built) ? built.href : './module-job.ts');
export default runInThread;
