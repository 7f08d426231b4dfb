/**
 * Errors that several layers raise (the launcher, the tables, the CLI): they live below all of them.
 * Each is printed as one line by the `rankflow` command (exit code 2 for a user's mistake).
 */

/** An error caused by the user's input (a recipe, a flag, a file): printed as one line, exit code 2. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** A user mistake in what was asked of a table or plot (unknown metric, empty selection, ...): one line. */
export class TableInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TableInputError';
  }
}

/**
 * What an entry point (the `rankflow` command, an `npm run` script) prints for an error that ends it, and its exit
 * code: a user's mistake is one line (2); the embedded services that cannot be started or reached are one line too
 * (1: the message, with a log tail, says why and what to do; matched by name so that this module loads no services);
 * anything else is a bug and keeps its stack trace (1).
 */
export function reportFatal(e: unknown, prefix: string): number {
  if (e instanceof UserError) {
    process.stderr.write(`${e.message.startsWith(`${prefix}: `) ? e.message : `${prefix}: ${e.message}`}\n`);
    return 2;
  }
  if (e instanceof Error && e.name === 'ServiceError') {
    process.stderr.write(`${prefix}: ${e.message}\n`);
    return 1;
  }
  console.error(e);
  return 1;
}
