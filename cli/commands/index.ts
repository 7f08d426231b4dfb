/**
 * The registry of `rankflow` subcommands, in the order of `rankflow --help`. Each entry loads its module
 * only when the command runs (or when `--help` lists the summaries), so starting one command never pays for
 * the others' imports (the Temporal client, the plotting stack, ...).
 */
import type { Command } from '../command.js';
export type { Command };

export interface CommandEntry {
  name: string;
  load(): Promise<Command>;
}

const orchestrate = () => import('./orchestrate.js');

export const COMMANDS: CommandEntry[] = [
  { name: 'plan', load: async () => (await import('./plan.js')).planCommand },
  { name: 'validate', load: async () => (await import('./validate.js')).validateCommand },
  { name: 'submit', load: async () => (await import('./submit.js')).submitCommand },
  { name: 'status', load: async () => (await orchestrate()).statusCommand },
  { name: 'ls', load: async () => (await orchestrate()).lsCommand },
  { name: 'logs', load: async () => (await orchestrate()).logsCommand },
  { name: 'cancel', load: async () => (await orchestrate()).cancelCommand },
  { name: 'pause', load: async () => (await orchestrate()).pauseCommand },
  { name: 'unpause', load: async () => (await orchestrate()).unpauseCommand },
  { name: 'resume', load: async () => (await orchestrate()).resumeCommand },
  { name: 'worker', load: async () => (await orchestrate()).workerCommand },
  { name: 'table', load: async () => (await import('./table.js')).tableCommand },
  { name: 'plot', load: async () => (await import('./plot.js')).plotCommand },
  { name: 'export', load: async () => (await import('./export.js')).exportCommand },
  { name: 'ui', load: async () => (await import('./ui.js')).uiCommand },
  { name: 'services', load: async () => (await orchestrate()).servicesCommand },
];
