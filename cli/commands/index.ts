/** The registry of `rankflow` subcommands. Each command module exports one `Command`. */
export interface Command {
  name: string;
  summary: string;
  help: string;
  run(argv: string[]): Promise<number>;
}

export const COMMANDS: Command[] = [];
