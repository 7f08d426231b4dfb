/**
 * JSON written in pieces: the same text as `JSON.stringify(value, null, indent)` for plain data (objects,
 * arrays, strings, numbers, booleans, null; undefined members skipped), produced as a sequence of chunks of
 * about `CHUNK_CHARS` so that a large manifest (thousands of runs) never has to exist as one string (V8
 * refuses strings past 2^29 characters: `RangeError: Invalid string length`).
 */
export const CHUNK_CHARS = 1 << 16;

function* pieces(v: unknown, indent: string, cur: string): Generator<string> {
  if (Array.isArray(v)) {
    if (v.length === 0) return yield '[]';
    const inner = cur + indent;
    yield '[';
    for (let i = 0; i < v.length; i++) {
      yield (i ? ',' : '') + (indent ? '\n' + inner : '');
      const x: unknown = v[i];
      if (x === undefined || typeof x === 'function') yield 'null';
      else yield* pieces(x, indent, inner);
    }
    return yield (indent ? '\n' + cur : '') + ']';
  }
  if (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON !== 'function') {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined && typeof x !== 'function');
    if (entries.length === 0) return yield '{}';
    const inner = cur + indent;
    yield '{';
    for (let i = 0; i < entries.length; i++) {
      const [k, x] = entries[i]!;
      yield (i ? ',' : '') + (indent ? '\n' + inner : '') + JSON.stringify(k) + (indent ? ': ' : ':');
      yield* pieces(x, indent, inner);
    }
    return yield (indent ? '\n' + cur : '') + '}';
  }
  yield JSON.stringify(v) ?? 'null';
}

/** The JSON text of `value` in chunks of about CHUNK_CHARS characters (a leaf longer than that is one chunk). */
export function* jsonChunks(value: unknown, indent = 0): Generator<string> {
  let buf = '';
  for (const p of pieces(value, ' '.repeat(indent), '')) {
    buf += p;
    if (buf.length >= CHUNK_CHARS) {
      yield buf;
      buf = '';
    }
  }
  if (buf) yield buf;
}

/** The JSON text of `value` as one Buffer (UTF-8), built without one string of the whole text. */
export function jsonBuffer(value: unknown, indent = 0): Buffer {
  const parts: Buffer[] = [];
  for (const c of jsonChunks(value, indent)) parts.push(Buffer.from(c, 'utf8'));
  return Buffer.concat(parts);
}
