/**
 * The `rankflow` command line. Each subcommand lives in a module under cli/commands, loaded only when it
 * runs; user errors print one clear line (no stack trace) and exit 2.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError, reportFatal } from '../core/errors.js';
import { PROJECT_ROOT } from '../core/paths.js';
import { COMMANDS } from './commands/index.js';

function version(): string {
  return (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

async function usage(): Promise<string> {
  const commands = await Promise.all(COMMANDS.map((c) => c.load()));
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    `rankflow ${version()}: declarative PEFT experiment orchestration`,
    '',
    'Usage: rankflow <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Options:',
    '  -h, --help     show help (also `rankflow <command> --help`)',
    '  -V, --version  print the version',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    console.log(await usage());
    return 0;
  }
  if (first === '-V' || first === '--version') {
    console.log(version());
    return 0;
  }
  const entry = COMMANDS.find((c) => c.name === first);
  if (!entry) {
    throw new UserError(`unknown command \`${first}\`; run \`rankflow --help\` for the list of commands`);
  }
  const cmd = await entry.load();
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
    process.exitCode = reportFatal(err, 'rankflow');
  },
);
