/**
 * The one place that knows where the project lives on disk. Every module that needs the checkout (the
 * runtime's folder, the embedded services' state, package.json) asks here, so the answer is the same
 * whether the code runs from its TypeScript sources or from the compiled copy.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'runtime-native'))) return dir;
    if (dirname(dir) === dir) throw new Error(`cannot find the rankflow checkout above ${start}`);
  }
}

/** The checkout's root folder (holds package.json and runtime-native/). */
export const PROJECT_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));
/** The Python runtime's package folder (put on PYTHONPATH by the launcher). */
export const RUNTIME_DIR = join(PROJECT_ROOT, 'runtime-native');
