#!/usr/bin/env node
// Entry point of the `rankflow` command: loads the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';
register();
await import('./main.ts');
