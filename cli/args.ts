/**
 * The one command-line layer of rankflow (the `rankflow` subcommands and the scripts): a command declares its
 * options once, with their help; `defineCommand` parses argv with node's `parseArgs` (strict) and generates
 * the command's `--help` from the same declarations. Parse errors are one-line user errors that name the fix.
 */
import { parseArgs } from 'node:util';
import { UserError, reportFatal } from '../core/errors.js';
import type { Command } from './command.js';

export interface OptionDef {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** The value's placeholder in the help (`N`, `DIR`, `md|latex`); `[FILE]` for `bare` options. */
  arg?: string;
  help: string;
  /** Help section (default `Options`). */
  group?: string;
  /** The option may stand without a value: it then means this value (`--reference` alone). */
  bare?: string;
}
export type OptionDefs = Record<string, OptionDef>;

type ValueOf<O extends OptionDef> = O['type'] extends 'boolean' ? boolean : string;
/** The parsed values of options `O` (absent when not given). */
export type Values<O extends OptionDefs> = {
  [K in keyof O]?: O[K]['multiple'] extends true ? ValueOf<O[K]>[] : ValueOf<O[K]>;
};

export interface Parsed<O extends OptionDefs> {
  values: Values<O>;
  positionals: string[];
}

export interface CommandDef<O extends OptionDefs> {
  name: string;
  summary: string;
  /** What follows `rankflow <name>` in the usage line: positionals, e.g. `<recipe.yaml>`. */
  args?: string;
  /** Paragraphs between the usage line and the options. */
  description?: string;
  options: O;
  /** Text after the options (notes, examples). */
  epilog?: string;
  /** Usage prefix (default `rankflow <name>`; scripts give their own). */
  usage?: string;
  /** At most this many positionals (default: no limit; the command checks its own). */
  maxArgs?: number;
  run(parsed: Parsed<O>): Promise<number>;
}

function flagText(name: string, o: OptionDef): string {
  const long = `--${name}${o.type === 'string' ? ` ${o.arg ?? 'VALUE'}` : ''}`;
  return o.short ? `-${o.short}, ${long}` : long;
}

/** The help text of a command, generated from its declarations. */
export function helpText<O extends OptionDefs>(def: CommandDef<O>): string {
  const usage = def.usage ?? `rankflow ${def.name}`;
  const lines = [
    `Usage: ${usage}${def.args ? ` ${def.args}` : ''}${Object.keys(def.options).length ? ' [options]' : ''}`,
  ];
  if (def.description) lines.push('', def.description);
  const groups = new Map<string, [string, string][]>();
  for (const [name, o] of Object.entries(def.options)) {
    const g = o.group ?? 'Options';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push([flagText(name, o), o.help]);
  }
  const help: [string, string] = ['-h, --help', 'show this help'];
  if (!groups.has('Options')) groups.set('Options', []);
  groups.get('Options')!.push(help);
  const width = Math.min(28, Math.max(...[...groups.values()].flat().map(([f]) => f.length)));
  for (const [g, rows] of groups) {
    lines.push('', `${g}:`);
    for (const [flag, text] of rows) {
      const [first, ...rest] = text.split('\n');
      if (flag.length > width) lines.push(`  ${flag}`, `  ${''.padEnd(width)}  ${first}`);
      else lines.push(`  ${flag.padEnd(width)}  ${first}`);
      for (const r of rest) lines.push(`  ${''.padEnd(width)}  ${r}`);
    }
  }
  if (def.epilog) lines.push('', def.epilog);
  return lines.join('\n');
}

/** Inserts the `bare` value of options given without one (`--reference` last, or followed by a flag). */
function withBareValues(argv: string[], options: OptionDefs): string[] {
  const out = [...argv];
  for (const [name, o] of Object.entries(options)) {
    if (o.bare === undefined) continue;
    for (let i = 0; i < out.length; i++) {
      if (out[i] === `--${name}` && (i === out.length - 1 || out[i + 1]!.startsWith('-'))) out.splice(i + 1, 0, o.bare);
    }
  }
  return out;
}

/** One line from node's parseArgs error. */
function parseErrorText(command: string, e: Error): string {
  const code = (e as { code?: string }).code;
  const msg = e.message.split('\n')[0]!;
  const opt = /'(-[^' ]+)/.exec(msg)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && opt) return `${command}: unknown option \`${opt}\``;
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && opt) {
    return /argument missing/.test(msg)
      ? `${command}: ${opt.replace(/^-\w, /, '')} needs a value`
      : `${command}: ${opt} takes no value`;
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
    return `${command}: unexpected argument ${/'([^']*)'/.exec(msg)?.[1] ?? ''}`;
  return `${command}: ${msg.replace(/\. To specify a positional.*$/, '')}`;
}

/** Parses argv against the declarations; errors are UserErrors pointing at the command's help. */
export function parseCommandLine<O extends OptionDefs>(def: CommandDef<O>, argv: string[]): Parsed<O> {
  const options = Object.fromEntries(
    Object.entries(def.options).map(([k, o]) => [
      k,
      { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) },
    ]),
  );
  const helpRef = def.usage ? `\`${def.usage} --help\`` : `\`rankflow ${def.name} --help\``;
  let parsed: Parsed<O>;
  try {
    const r = parseArgs({ args: withBareValues(argv, def.options), options, allowPositionals: true, strict: true });
    parsed = { values: r.values as Values<O>, positionals: r.positionals };
  } catch (e) {
    throw new UserError(`${parseErrorText(def.name, e as Error)}; see ${helpRef}`);
  }
  const extra = parsed.positionals[def.maxArgs ?? Infinity];
  if (extra !== undefined) throw new UserError(`${def.name}: unexpected argument \`${extra}\`; see ${helpRef}`);
  return parsed;
}

/** A `rankflow` subcommand from its declarations: `run(argv)` parses, `help` is generated. */
export function defineCommand<O extends OptionDefs>(def: CommandDef<O>): Command & { def: CommandDef<O> } {
  return {
    name: def.name,
    summary: def.summary,
    get help() {
      return helpText(def);
    },
    def,
    run: async (argv: string[]) => await def.run(parseCommandLine(def, argv)),
  };
}

/** Exactly `n` positionals, else the user error `message`. */
export function expectPositionals(positionals: string[], n: number, message: string): string[] {
  if (positionals.length !== n) throw new UserError(message);
  return positionals;
}

/**
 * The one run id of a command (`run-<32 hex>`, as `plan` and `status` print them): anything else (a path, a
 * sweep id) is a one-line user error before any store key is made from it.
 */
export function runIdArg(command: string, positionals: readonly string[]): string {
  const id = positionals[0];
  if (!id || positionals.length > 1) {
    throw new UserError(
      `${command}: expected one run id (\`run-...\`, see \`rankflow status <sweep>\` or \`rankflow plan\`)`,
    );
  }
  if (!/^run-[0-9a-f]{32}$/.test(id)) {
    throw new UserError(
      `${command}: \`${id.slice(0, 120)}\` is not a run id (run-<32 hex digits>, as \`rankflow status <sweep>\` prints them)`,
    );
  }
  return id;
}

export function intFlag(command: string, name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new UserError(`${command}: --${name} must be an integer >= ${min}, got \`${value}\``);
  }
  return n;
}

/** Splits repeatable, comma-separated values (`--method lora,dora --method vera`). */
export function listFlag(values: string[] | undefined): string[] | undefined {
  if (!values) return undefined;
  const out = values
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
  return out.length ? out : undefined;
}

/**
 * Runs a script's command (`scripts/*.ts`): `--help`, one-line user errors (exit code 2), the exit code.
 */
export function runScript<O extends OptionDefs>(def: CommandDef<O>, argv = process.argv.slice(2)): void {
  const main = async (): Promise<number> => {
    if (argv.includes('-h') || argv.includes('--help')) {
      console.log(helpText(def));
      return 0;
    }
    return await def.run(parseCommandLine(def, argv));
  };
  main().then(
    (code) => (process.exitCode = code),
    (e: unknown) => (process.exitCode = reportFatal(e, def.name)),
  );
}
