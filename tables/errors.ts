/** A user mistake in what was asked of a table or plot (unknown metric, empty selection, ...): one line. */
export class TableInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TableInputError';
  }
}
