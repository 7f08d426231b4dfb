/** The registry of `rankflow` subcommands. Each command module exports its `Command`s. */
import type { Command } from '../command.js';
export type { Command };

import { planCommand } from './plan.js';
import { validateCommand } from './validate.js';
import { tableCommand } from './table.js';
import { plotCommand } from './plot.js';
import { submitCommand } from './submit.js';
import { exportCommand } from './export.js';
import {
  cancelCommand,
  logsCommand,
  lsCommand,
  pauseCommand,
  resumeCommand,
  servicesCommand,
  statusCommand,
  unpauseCommand,
  workerCommand,
} from './orchestrate.js';

export const COMMANDS: Command[] = [
  planCommand,
  validateCommand,
  submitCommand,
  statusCommand,
  lsCommand,
  logsCommand,
  cancelCommand,
  pauseCommand,
  unpauseCommand,
  resumeCommand,
  workerCommand,
  tableCommand,
  plotCommand,
  exportCommand,
  servicesCommand,
];
