/**
 * Canonical JSON: object keys sorted (by UTF-16 code units), no whitespace, numbers in their shortest
 * round-trip form with -0 written as 0 (so `1`, `1.0` and `1e0` in a recipe are one number). Non-finite
 * numbers and undefined values are refused: a spec that contains them has no canonical form.
 * Two values are the same run setting exactly when their canonical JSON is equal.
 */
import { sha256Hex } from './hash.js';

export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new Error(`canonicalJson: non-finite number ${value}`);
      return Object.is(value, -0) ? '0' : JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) return '[' + value.map(canonicalJson).join(',') + ']';
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).sort();
      let out = '{';
      let first = true;
      for (const k of keys) {
        const v = obj[k];
        if (v === undefined) throw new Error(`canonicalJson: undefined value at key ${k}`);
        out += (first ? '' : ',') + JSON.stringify(k) + ':' + canonicalJson(v);
        first = false;
      }
      return out + '}';
    }
    default:
      throw new Error(`canonicalJson: cannot encode a ${typeof value}`);
  }
}

/** The first `hexChars` hex characters of SHA-256 over the canonical JSON of `value`. */
export function hashValue(value: unknown, hexChars = 32): string {
  return sha256Hex(canonicalJson(value)).slice(0, hexChars);
}
