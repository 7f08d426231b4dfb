/**
 * The benchmark's baseline only: the hand-written SHA-256 the planner used before planning/hash.ts (which
 * takes SHA-256 from @noble/hashes). bench/plan_bench.ts plans the same recipe with both, side by side.
 *
 * SHA-256 (FIPS 180-4) in plain TypeScript: no Node built-ins, so workflow code (which runs in Temporal's
 * deterministic sandbox) can compute the same run ids as the CLI. Strings are hashed as UTF-8.
 *
 * `Sha256` is incremental and `clone()`-able, so the planner can hash the common prefix of many run specs
 * once and finish each run from a copy of that state.
 */

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

const W = new Int32Array(64);
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export class Sha256 {
  private readonly h = new Int32Array(IV);
  /** The current block as 16 big-endian words (Int32Array keeps values as small integers in V8). */
  private readonly buf = new Int32Array(16);
  private pos = 0; // bytes in the current block
  private bytes = 0; // total bytes processed (messages stay far below 2^53)

  /** A copy of the current state: hashing more into the copy leaves this one unchanged. */
  clone(): Sha256 {
    return new Sha256().copyFrom(this);
  }

  /** Make this instance a copy of `other`'s state (no allocation; for hashing many messages with one prefix). */
  copyFrom(other: Sha256): this {
    this.h.set(other.h);
    this.buf.set(other.buf);
    this.pos = other.pos;
    this.bytes = other.bytes;
    return this;
  }

  /** Feed a string (encoded as UTF-8). */
  update(s: string): this {
    const n = s.length;
    for (let i = 0; i < n; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) {
        this.byte(c);
        continue;
      }
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
        }
      }
      if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // lone surrogate: U+FFFD, as TextEncoder does
      if (c < 0x800) {
        this.byte(0xc0 | (c >> 6));
        this.byte(0x80 | (c & 63));
      } else if (c < 0x10000) {
        this.byte(0xe0 | (c >> 12));
        this.byte(0x80 | ((c >> 6) & 63));
        this.byte(0x80 | (c & 63));
      } else {
        this.byte(0xf0 | (c >> 18));
        this.byte(0x80 | ((c >> 12) & 63));
        this.byte(0x80 | ((c >> 6) & 63));
        this.byte(0x80 | (c & 63));
      }
    }
    return this;
  }

  /** Feed raw bytes. */
  updateBytes(b: Uint8Array): this {
    for (let i = 0; i < b.length; i++) this.byte(b[i]!);
    return this;
  }

  /** Finish and return the digest as 64 lowercase hex characters. The instance must not be reused. */
  hex(): string {
    const bitsHi = Math.floor((this.bytes * 8) / 0x100000000);
    const bitsLo = (this.bytes * 8) >>> 0;
    this.byte(0x80);
    while (this.pos !== 56) this.byte(0);
    for (const w of [bitsHi, bitsLo]) {
      this.byte(w >>> 24);
      this.byte((w >>> 16) & 255);
      this.byte((w >>> 8) & 255);
      this.byte(w & 255);
    }
    let out = '';
    for (let i = 0; i < 8; i++) {
      const v = this.h[i]!;
      out += HEX[v >>> 24]! + HEX[(v >>> 16) & 255]! + HEX[(v >>> 8) & 255]! + HEX[v & 255]!;
    }
    return out;
  }

  private byte(b: number): void {
    const p = this.pos;
    const shift = (3 - (p & 3)) << 3;
    if (shift === 24) this.buf[p >> 2] = b << 24;
    else this.buf[p >> 2]! |= b << shift;
    this.bytes++;
    if (p === 63) {
      this.compress();
      this.pos = 0;
    } else {
      this.pos = p + 1;
    }
  }

  private compress(): void {
    W.set(this.buf);
    for (let t = 16; t < 64; t++) {
      const w15 = W[t - 15]!;
      const w2 = W[t - 2]!;
      const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
      const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
      W[t] = (W[t - 16]! + s0 + W[t - 7]! + s1) | 0;
    }
    const h = this.h;
    let a = h[0]!,
      bb = h[1]!,
      c = h[2]!,
      d = h[3]!,
      e = h[4]!,
      f = h[5]!,
      g = h[6]!,
      hh = h[7]!;
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K[t]! + W[t]!) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & bb) ^ (a & c) ^ (bb & c);
      const t2 = (S0 + maj) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = bb;
      bb = a;
      a = (t1 + t2) | 0;
    }
    h[0] = (h[0]! + a) | 0;
    h[1] = (h[1]! + bb) | 0;
    h[2] = (h[2]! + c) | 0;
    h[3] = (h[3]! + d) | 0;
    h[4] = (h[4]! + e) | 0;
    h[5] = (h[5]! + f) | 0;
    h[6] = (h[6]! + g) | 0;
    h[7] = (h[7]! + hh) | 0;
  }
}

/** SHA-256 of a string (UTF-8), as 64 hex characters. */
export function sha256Hex(s: string): string {
  return new Sha256().update(s).hex();
}
