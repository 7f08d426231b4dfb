/**
 * Reference rows: numbers reported in papers (or in the official code's logged results), kept in a CSV file
 * (`reference/paper-numbers.csv`) with the columns
 *   method, setting, backbone, benchmark, metric, value, params, source
 * `benchmark` uses rankflow's dataset names (`glue/sst2`, `gsm8k`, `vtab/cifar`) or an average column key
 * (`glue` = GLUE Avg, `vtab:natural`, `vtab:specialized`, `vtab:structured`, `vtab` = VTAB Mean).
 * `value` is as printed in the source (percent for accuracies). `params` (trainable parameters) may be empty.
 * Lines starting with `#` are comments. Pure: parses text, reads no file.
 */
import { TableInputError } from '../core/errors.js';

export interface ReferenceRow {
  method: string;
  setting: string;
  backbone: string;
  benchmark: string;
  metric: string;
  value: number;
  params: number | null;
  source: string;
}

export const REFERENCE_COLUMNS = [
  'method',
  'setting',
  'backbone',
  'benchmark',
  'metric',
  'value',
  'params',
  'source',
] as const;

/** Splits one CSV line (RFC 4180 quoting: `"a, b"`, doubled `""` inside quotes). */
export function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"') {
        if (line[i + 1] === '"') {
          cur += '"';
          i++;
        } else quoted = false;
      } else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (quoted) throw new Error('unterminated quote');
  out.push(cur);
  return out;
}

/** Parses the reference CSV; `file` names it in errors. */
export function parseReferences(text: string, file: string): ReferenceRow[] {
  const lines = text.split(/\r?\n/);
  let header: string[] | null = null;
  const rows: ReferenceRow[] = [];
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    let cells: string[];
    try {
      cells = splitCsvLine(line).map((c) => c.trim());
    } catch {
      throw new TableInputError(`${file}:${i + 1}: unterminated quote; close the "..." field`);
    }
    if (!header) {
      header = cells;
      const missing = REFERENCE_COLUMNS.filter((c) => !header!.includes(c));
      if (missing.length > 0) {
        throw new TableInputError(
          `${file}:${i + 1}: header lacks column(s) ${missing.join(', ')}; the header is ${REFERENCE_COLUMNS.join(',')}`,
        );
      }
      return;
    }
    if (cells.length !== header.length) {
      throw new TableInputError(
        `${file}:${i + 1}: ${cells.length} fields, the header has ${header.length}; quote fields that contain commas`,
      );
    }
    const get = (c: (typeof REFERENCE_COLUMNS)[number]): string => cells[header!.indexOf(c)]!;
    const value = Number(get('value'));
    if (get('value') === '' || !Number.isFinite(value)) {
      throw new TableInputError(`${file}:${i + 1}: value \`${get('value')}\` is not a number`);
    }
    const p = get('params');
    const params = p === '' ? null : Number(p);
    if (params !== null && !(Number.isFinite(params) && params >= 0)) {
      throw new TableInputError(
        `${file}:${i + 1}: params \`${p}\` is not a non-negative number (leave it empty if unknown)`,
      );
    }
    for (const c of ['method', 'backbone', 'benchmark', 'metric', 'source'] as const) {
      if (get(c) === '') throw new TableInputError(`${file}:${i + 1}: empty \`${c}\``);
    }
    rows.push({
      method: get('method'),
      setting: get('setting'),
      backbone: get('backbone'),
      benchmark: get('benchmark'),
      metric: get('metric'),
      value,
      params,
      source: get('source'),
    });
  });
  if (!header)
    throw new TableInputError(`${file}: no header line; the first line must be ${REFERENCE_COLUMNS.join(',')}`);
  return rows;
}
