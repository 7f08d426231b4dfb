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
