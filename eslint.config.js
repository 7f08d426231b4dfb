// ESLint (typescript-eslint) for rankflow's TypeScript. `npm run lint`.
//
// Beyond the recommended rules: no floating promises; Temporal's rule that workflow code imports no Node
// built-ins (it runs in a deterministic sandbox); the one-way import rule of the layers (README "Layout");
// and function size / complexity as warnings.
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Layers, bottom first. A folder may import its own layer's folders and those below, never one above.
const LAYERS = [
  ['core'],
  ['schemas'],
  ['planning', 'tables', 'store', 'launcher', 'services'],
  ['workflows', 'activities'],
  ['cli'],
  ['scripts', 'bench', 'tests'],
];

const above = (layer) => LAYERS.slice(layer + 1).flat();

/** `no-restricted-imports` patterns that forbid importing `folders` from anywhere in the project. */
const forbidFolders = (folders, why) =>
  folders.map((f) => ({ group: [`**/${f}/**`, `**/${f}`], message: `${why} (README "Layout": imports flow one way)` }));

const NODE_BUILTINS = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

const layerRules = LAYERS.flatMap((folders, i) =>
  folders.map((folder) => {
    const patterns = forbidFolders(above(i), `${folder}/ is below ${above(i).join(', ')}`);
    // Planning is pure and deterministic (workflows may import it); it also keeps out of the I/O layers.
    if (folder === 'planning')
      patterns.push(...forbidFolders(['store', 'launcher', 'services', 'tables'], 'planning/ is pure'));
    const paths = [];
    if (folder === 'workflows' || folder === 'planning' || folder === 'schemas') {
      paths.push(
        ...NODE_BUILTINS.map((name) => ({
          name,
          message: `${folder}/ runs in Temporal's deterministic sandbox: no Node built-ins`,
        })),
      );
    }
    return {
      files: [`${folder}/**/*.ts`],
      rules: { 'no-restricted-imports': ['error', { patterns, paths }] },
    };
  }),
);

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      '.state/**',
      '.tools/**',
      'dist/**',
      'runtime-native/**',
      'results/**',
      'bench/out/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      'max-lines-per-function': ['warn', { max: 105, skipBlankLines: true, skipComments: true }],
      complexity: ['warn', 25],
    },
  },
  {
    // A test file's describe/it callbacks are lists of cases, not functions to hold in one's head.
    files: ['tests/**/*.ts'],
    rules: { 'max-lines-per-function': 'off' },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
  ...layerRules,
);
