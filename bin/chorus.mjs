#!/usr/bin/env node
// The `chorus` command. In a source checkout (cli/main.ts beside bin/) the TypeScript runs through
// tsx, so edits take effect without a build; an installed package or an image has only the compiled
// JavaScript (dist/, from `npm run build`) and runs that.
import { existsSync } from 'node:fs';

const source = new URL('../cli/main.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import(new URL('../dist/cli/main.js', import.meta.url).href);
}
