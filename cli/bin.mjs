#!/usr/bin/env node
// Entry point of the `rankflow` command: runs the compiled CLI (cli/build.mjs), building it first when the
// sources changed since the last build; without esbuild it falls back to compiling through tsx.
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { build, entryFor, sourceStamp } from './build.mjs';

const stamp = sourceStamp();
let entry = entryFor(stamp);
if (!existsSync(entry)) {
  try {
    entry = await build(stamp);
  } catch (e) {
    if (process.env.RANKFLOW_DEBUG) console.error(e);
    const { register } = await import('tsx/esm/api');
    register();
    entry = new URL('./main.ts', import.meta.url).pathname;
  }
}
await import(pathToFileURL(entry).href);
