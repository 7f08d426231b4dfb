/**
 * The table's columns: one per column value (each with its metric and direction), and for dataset columns the
 * benchmark averages (GLUE Avg; VTAB-1k Natural / Specialized / Structured and VTAB Mean) and the overall Avg.
 * An average never mixes higher-is-better and lower-is-better metrics.
 */
import { TableInputError } from '../core/errors.js';
import {
  benchmarkOf,
  GLUE_NOT_AVERAGED,
  metricDirection,
  prettyDataset,
  VTAB_GROUPS,
  type Direction,
} from './names.js';
import type { Accumulated, Layout } from './aggregate.js';
import { dimText, type Dim, type TableColumn } from './model.js';

/** The metric of each column (`mixed` across dataset blocks); a column that mixes metrics is an error. */
export function columnMetrics(colMetric: Accumulated['colMetric'], colDim: Dim): Map<string, string> {
  const columnMetric = new Map<string, string>();
  for (const [block, bm] of colMetric) {
    for (const [ck, ms] of bm) {
      if (ms.size > 1) {
        const where = block ? `${prettyDataset(block)}, ${colDim} ${ck}` : `column ${ck || '(none)'}`;
        throw new TableInputError(
          `${where} mixes metrics ${[...ms].sort().join(' and ')}; pass --metric NAME to pick one`,
        );
      }
      const m = [...ms][0]!;
      const prev = columnMetric.get(ck);
      columnMetric.set(ck, prev === undefined || prev === m ? m : 'mixed');
    }
  }
  return columnMetric;
}

export function dataColumns(
  layout: Layout,
  columnMetric: Map<string, string>,
  colMetric: Accumulated['colMetric'],
  askedMetric: string | null | undefined,
): TableColumn[] {
  const { colDim } = layout;
  return layout.colKeys.map((ck) => {
    const m = columnMetric.get(ck) ?? askedMetric ?? 'none';
    const dirs = new Set<Direction>();
    for (const [, bm] of colMetric) for (const mm of bm.get(ck) ?? []) dirs.add(metricDirection(mm));
    return {
      key: ck,
      label:
        colDim === 'dataset' ? prettyDataset(ck) : dimText(colDim, layout.colValues.get(ck) ?? null) || `no ${colDim}`,
      kind: 'data',
      metric: m,
      direction: dirs.size === 1 ? [...dirs][0]! : metricDirection(m),
      members: [],
    };
  });
}

function groupColumn(key: string, label: string, members: TableColumn[], notes: string[]): TableColumn | null {
  const dirs = new Set(members.map((c) => c.direction));
  if (dirs.size > 1) {
    const what = members.map((c) => `${c.label}: ${c.metric}`).join(', ');
    notes.push(`No ${label} column: it would average higher-is-better and lower-is-better metrics (${what}).`);
    return null;
  }
  const ms = new Set(members.map((c) => c.metric));
  return {
    key,
    label,
    kind: key === 'avg' ? 'avg' : 'group',
    metric: ms.size === 1 ? [...ms][0]! : 'mixed',
    direction: [...dirs][0]!,
    members: members.map((c) => c.key),
  };
}

const bmOf = (c: TableColumn) => benchmarkOf(c.key);

/** The data columns with the benchmark averages inserted after each benchmark's last column, and Avg. */
export function withGroupColumns(columns: TableColumn[], wantAvg: boolean, notes: string[]): TableColumn[] {
  const out: TableColumn[] = [];
  const glueAvg = columns.filter((c) => bmOf(c)?.benchmark === 'glue' && !GLUE_NOT_AVERAGED.includes(bmOf(c)!.task));
  const vtabCols = columns.filter((c) => bmOf(c)?.benchmark === 'vtab');
  const vtabGroupCols: TableColumn[] = [];
  const push = (g: TableColumn | null): TableColumn | null => (g ? (out.push(g), g) : null);
  columns.forEach((c, i) => {
    out.push(c);
    const bm = bmOf(c);
    const nbm = columns[i + 1] ? bmOf(columns[i + 1]!) : null;
    if (bm?.benchmark === 'glue' && nbm?.benchmark !== 'glue' && glueAvg.length >= 2)
      push(groupColumn('glue', 'GLUE Avg', glueAvg, notes));
    if (bm?.benchmark === 'vtab' && (nbm?.benchmark !== 'vtab' || nbm.group !== bm.group)) {
      const name = bm.group!;
      const members = vtabCols.filter((x) => bmOf(x)!.group === name);
      const g = push(groupColumn(`vtab:${name}`, name[0]!.toUpperCase() + name.slice(1), members, notes));
      if (g) vtabGroupCols.push(g);
    }
    if (bm?.benchmark === 'vtab' && nbm?.benchmark !== 'vtab' && vtabGroupCols.length >= 2)
      push(groupColumn('vtab', 'VTAB Mean', vtabGroupCols, notes));
  });
  const oneBenchmark =
    (glueAvg.length > 0 && columns.every((c) => bmOf(c)?.benchmark === 'glue')) ||
    (vtabCols.length > 0 && columns.every((c) => bmOf(c)?.benchmark === 'vtab'));
  if (wantAvg && columns.length >= 2 && !oneBenchmark) push(groupColumn('avg', 'Avg', columns, notes));
  const glueCols = columns.filter((c) => bmOf(c)?.benchmark === 'glue');
  if (glueCols.length > glueAvg.length && glueAvg.length >= 2) {
    const left = glueCols.filter((c) => !glueAvg.includes(c)).map((c) => prettyDataset(c.key));
    notes.push(`GLUE Avg excludes ${left.join(', ')}, as the GLUE papers do.`);
  }
  notes.push(...vtabNotes(vtabCols, vtabGroupCols));
  return out;
}

const title = (g: string): string => g[0]!.toUpperCase() + g.slice(1);

/**
 * What the VTAB-1k averages stand for: the mean of the group means, and which groups (and tasks within a
 * group) are missing from them; the papers' numbers average all 19 tasks in three groups.
 */
function vtabNotes(vtabCols: TableColumn[], groupCols: TableColumn[]): string[] {
  const out: string[] = [];
  const present = groupCols.map((g) => g.key.slice('vtab:'.length));
  for (const g of present) {
    const all = VTAB_GROUPS[g as keyof typeof VTAB_GROUPS] ?? [];
    const have = vtabCols.filter((c) => bmOf(c)!.group === g).length;
    if (have < all.length) out.push(`${title(g)} averages ${have} of the group's ${all.length} tasks.`);
  }
  if (groupCols.length < 2) return out;
  const missing = Object.keys(VTAB_GROUPS).filter((g) => !present.includes(g));
  if (missing.length === 0) out.unshift('VTAB Mean is the mean of the group means (Natural, Specialized, Structured).');
  else {
    out.unshift(
      `VTAB Mean is the mean of the ${present.map(title).join(' and ')} group means only: no ${missing.map(title).join(' or ')} task is in the table (the papers' VTAB mean averages all three groups).`,
    );
  }
  return out;
}
