/**
 * SHA-256 for run and sweep ids, from @noble/hashes (audited, pure JavaScript): no Node built-ins, so workflow
 * code (Temporal's deterministic sandbox, where node:crypto does not exist) computes the same ids as the CLI.
 * Strings are hashed as UTF-8.
 *
 * `Sha256` is incremental and can be copied, so the planner hashes the common prefix of many run specs once
 * and finishes each run from a copy of that state.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

type State = ReturnType<typeof sha256.create>;

/** The incremental SHA-256 the planner uses (another implementation may be passed for benchmarks). */
export interface IncrementalSha256 {
  update(s: string): this;
  /** Continue from `other`'s state (this object is reused; `other` is unchanged). */
  copyFrom(other: this): this;
  clone(): IncrementalSha256;
  /** The digest in lowercase hex; the state must not be updated afterwards (copy into it instead). */
  hex(): string;
}

/** A reusable UTF-8 buffer: run specs are hashed in many short updates, so no allocation per update. */
let scratch = new Uint8Array(4096);
const encoder = new TextEncoder();

function utf8(s: string): Uint8Array {
  if (s.length * 3 > scratch.length) scratch = new Uint8Array(s.length * 3);
  return scratch.subarray(0, encoder.encodeInto(s, scratch).written);
}

export class Sha256 implements IncrementalSha256 {
  constructor(private readonly state: State = sha256.create()) {}
  update(s: string): this {
    this.state.update(utf8(s));
    return this;
  }
  copyFrom(other: this): this {
    other.state._cloneInto(this.state);
    return this;
  }
  clone(): Sha256 {
    return new Sha256(this.state.clone());
  }
  hex(): string {
    this.state.digestInto(digest);
    return bytesToHex(digest);
  }
}

const digest = new Uint8Array(32);

/** SHA-256 of a string (UTF-8) in lowercase hex. */
export function sha256Hex(s: string): string {
  return bytesToHex(sha256(utf8(s)));
}
