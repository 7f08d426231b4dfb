/**
 * What the dashboard's pages show, as plain data: the live source (cli/ui/source.ts) fills these from the
 * Temporal server and the artifact store; the pages (cli/ui/pages.ts) render them; unit tests build them by hand.
 */
import type { RunLabels, RunSpec } from '../../schemas/runspec.js';
import type { ResultRecord } from '../../schemas/result.js';
import type { StoredCheckpoint } from '../../store/checkpoints.js';

/** Counts of runs by state (`pending`, `running`, `succeeded`, ...), as the sweep workflow keeps them. */
export type Counts = Record<string, number>;

export interface SweepSummary {
  sweep_id: string;
  recipe: string | null;
  /** Planned runs (the manifest's). */
  total: number;
  /** When the manifest was written (submit or resume). */
  created_at: string | null;
  /** When the sweep workflow's current execution started and when it closed (null while it runs). */
  started_at: string | null;
  finished_at: string | null;
  /** `running`, `waiting`, `completed`, `cancelled`, `failed`, `cancelling`, `not started`, ... */
  state: string;
  /** Null when the sweep does not answer (no worker serves its queue) or never started. */
  counts: Counts | null;
  paused: boolean;
  /** Why the counts are missing, or a warning (a queue nobody polls). */
  note: string | null;
}

export interface RunRowView {
  run_id: string;
  labels: RunLabels;
  /** `pending`, `running`, `succeeded`, `failed`, `blocked`, `cancelled`, `missing` (closed sweep, no record). */
  state: string;
  step: number | null;
  total_steps: number | null;
  loss: number | null;
  /** The headline metric (`spec.dataset.metric`) of a succeeded run, and its name. */
  metric: number | null;
  metric_name: string;
  attempts: number | null;
  error: string | null;
  hint: string | null;
}

export interface SweepView {
  summary: SweepSummary;
  runs: RunRowView[];
}

export interface LogView {
  attempt: number;
  key: string;
  /** The log's last part (the page shows at most `LOG_TAIL` bytes; the full log is a download). */
  text: string;
  truncated: boolean;
}

export interface RunView {
  run_id: string;
  sweep_id: string;
  labels: RunLabels;
  spec: RunSpec;
  state: string;
  phase: string | null;
  step: number | null;
  total_steps: number | null;
  attempt: number | null;
  result: ResultRecord | null;
  failure: ResultRecord | null;
  checkpoints: StoredCheckpoint[];
  logs: LogView[];
  /** Training loss: the recorded curve once finished, else the points this server saw in heartbeats. */
  curve: { step: number; loss: number }[];
  /** Evaluations: seen live in heartbeats, else the record's best and final evaluations. */
  evals: { step: number; metrics: Record<string, number> }[];
  export_command: string;
}

export interface Health {
  temporal: 'ok' | 'down';
  address: string;
  store: string;
  /** While down: since when and the last error; after a restart: when the server answered again. */
  since: string | null;
  error: string | null;
  reconnected_at: string | null;
}

export type SweepAction = 'pause' | 'unpause' | 'cancel' | 'resume';
export const SWEEP_ACTIONS: readonly SweepAction[] = ['pause', 'unpause', 'cancel', 'resume'];

export interface TableView {
  /** The `<table>` and notes of `rankflow table`'s HTML renderer. */
  html: string;
  notes: string[];
}

export interface PlotView {
  kind: string;
  svg: string | null;
  /** Why a kind is not drawn (the data cannot support it). */
  skipped: string | null;
}

/** Everything the server asks of the Temporal server and the store. */
export interface UiSource {
  health(): Promise<Health>;
  sweeps(): Promise<SweepSummary[]>;
  sweep(id: string): Promise<SweepView | null>;
  run(sweepId: string, runId: string): Promise<RunView | null>;
  /** The full log of one attempt, or null. */
  log(runId: string, attempt: number): Promise<string | null>;
  table(sweepId: string, format: string): Promise<string>;
  tableView(sweepId: string): Promise<TableView>;
  plots(sweepId: string): Promise<PlotView[]>;
  plotFile(sweepId: string, kind: string, format: 'svg' | 'png'): Promise<Buffer | string | null>;
  act(sweepId: string, action: SweepAction): Promise<string>;
  close(): Promise<void>;
}
