/**
 * The old name of `scripts/gen.ts` (`npm run gen`), kept so that `npx tsx scripts/gen-method-schemas.ts [--check]`
 * still regenerates (or checks) every generated file: the describe snapshot and the contract's JSON Schemas.
 */
import './gen.js';
