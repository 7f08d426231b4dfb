/**
 * The `rankflow` command line. Each subcommand lives in its own module under cli/commands and is
 * registered here; user errors print one clear line (no stack trace) and exit 2.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../core/errors.js';
import { PROJECT_ROOT } from '../core/paths.js';
import { COMMANDS } from './commands/index.js';

const version = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    `rankflow ${version}: declarative PEFT experiment orchestration`,
    '',
    'Usage: rankflow <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Options:',
    '  -h, --help     show help (also `rankflow <command> --help`)',
    '  -V, --version  print the version',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    console.log(usage());
    return 0;
  }
  if (first === '-V' || first === '--version') {
    console.log(version);
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === first);
  if (!cmd) {
    throw new UserError(`unknown command \`${first}\`; run \`rankflow --help\` for the list of commands`);
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    console.log(cmd.help);
    return 0;
  }
  return await cmd.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UserError) {
      console.error(`rankflow: ${err.message}`);
      process.exitCode = 2;
    } else {
      console.error(err);
      process.exitCode = 1;
    }
  },
);
