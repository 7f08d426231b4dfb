/**
 * What an entry point prints for the error that ends it (the `rankflow` command and the `npm run` scripts share
 * it): one line for a user's mistake and for embedded services that cannot be reached, a stack trace for a bug.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { UserError, reportFatal } from '../core/errors.js';
import { ServiceError } from '../services/embedded.js';

describe('reportFatal', () => {
  afterEach(() => vi.restoreAllMocks());

  function printed(e: unknown, prefix: string): { code: number; out: string } {
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => {
      lines.push(String(s));
      return true;
    });
    vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => {
      lines.push(a.map((x) => (x instanceof Error ? (x.stack ?? x.message) : String(x))).join(' ') + '\n');
    });
    const code = reportFatal(e, prefix);
    return { code, out: lines.join('') };
  }

  it('a user error is one prefixed line, exit 2, never prefixed twice', () => {
    expect(printed(new UserError('--rank x: expected a positive integer'), 'rankflow')).toEqual({
      code: 2,
      out: 'rankflow: --rank x: expected a positive integer\n',
    });
    expect(printed(new UserError('make-results: no sweep'), 'make-results').out).toBe('make-results: no sweep\n');
  });

  it('services that do not answer are one line with no stack trace (a script printed one before)', () => {
    const { code, out } = printed(new ServiceError('the embedded S3 server runs but does not answer'), 'make-results');
    expect(code).toBe(1);
    expect(out).toBe('make-results: the embedded S3 server runs but does not answer\n');
  });

  it('anything else is a bug and keeps its stack trace', () => {
    const { code, out } = printed(new TypeError('x is undefined'), 'rankflow');
    expect(code).toBe(1);
    expect(out).toMatch(/TypeError: x is undefined\n\s+at /);
  });
});
