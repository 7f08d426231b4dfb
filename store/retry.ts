/** Retry an I/O step with exponential backoff (an S3 server that is briefly unreachable, say). */
export async function withRetries<T>(
  fn: () => Promise<T>,
  opts: {
    what: string;
    attempts?: number;
    firstDelayMs?: number;
    maxDelayMs?: number;
    signal?: AbortSignal;
    /** Errors for which a retry cannot help (default: retry everything). */
    fatal?: (e: unknown) => boolean;
  },
): Promise<T> {
  const attempts = opts.attempts ?? 8;
  let delay = opts.firstDelayMs ?? 500;
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i >= attempts || opts.signal?.aborted || opts.fatal?.(e)) {
        throw new Error(`${opts.what} failed after ${i} attempt(s): ${(e as Error).message}`, { cause: e });
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, opts.maxDelayMs ?? 8000);
    }
  }
}
