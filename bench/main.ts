// `npm run bench -- <name> [args]`: runs bench/<name>.ts, which prints its figures.
import { existsSync, readdirSync } from 'node:fs';

const [name, ...rest] = process.argv.slice(2);
const available = readdirSync(new URL('.', import.meta.url))
  .filter((f) => f.endsWith('.ts') && f !== 'main.ts')
  .map((f) => f.slice(0, -3));
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <${available.join('|')}> [options]`);
  process.exit(name ? 1 : 0);
}
const file = new URL(`./${name}.ts`, import.meta.url);
if (!existsSync(file)) process.exit(1);
process.argv = [process.argv[0], file.pathname, ...rest];
await import(file.href);
