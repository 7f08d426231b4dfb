/** One `rankflow` subcommand. Each module under cli/commands exports its commands; cli/commands/index.ts lists them. */
export interface Command {
  name: string;
  summary: string;
  help: string;
  run(argv: string[]): Promise<number>;
}
