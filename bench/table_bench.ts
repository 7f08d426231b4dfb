/**
 * Benchmark: a paper table from 100,000 result records.
 *
 *   npx tsx bench/table_bench.ts [--records 100000] [--store]
 *
 * Records (20 methods × 5 ranks × 20 datasets × seeds, 20-point loss curves, 1% failed, 1% missing) are
 * serialised to JSON first, as the store holds them; the timed pipeline is what `rankflow table` does after
 * fetching: JSON.parse + schema validation (zod) + RunRow conversion, aggregation (`buildTable`), and
 * rendering of every format. The same pipeline on a tenth of the records gives the scaling ratio in the same
 * run. With --store, 10,000 records are also written to and read back from a LocalStore in a temporary
 * folder (the file-system part of `rankflow table`). Prints wall time per stage and the peak RSS / heap.
 * Side by side: the same RunRows tabulated and rendered by today's tables/ and by the code before issue 17
 * (bench/baseline/table_v1), alternating, five rounds each; the medians and their ratio are printed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ResultRecord } from '../schemas/result.js';
import { type SweepManifest } from '../schemas/orchestration.js';
import { missingRun, runFromRecord, type RunRow } from '../tables/runs.js';
import { buildTable } from '../tables/table.js';
import { FORMATS, render } from '../tables/render.js';
import { buildTable as buildTableV1 } from './baseline/table_v1/table.js';
import { render as renderV1 } from './baseline/table_v1/render.js';
import { LocalStore } from '../store/store.js';
import { readSelection } from '../cli/results-reader.js';
import { labelsFor, makeRecord, rng, runIdFor, specFor, type RecordOptions } from '../tests/tables-fixtures.js';

const args = process.argv.slice(2);
const N = Number(args[args.indexOf('--records') + 1] ?? NaN) || 100_000;
const withStore = args.includes('--store');

let peakRss = 0;
let peakHeap = 0;
const sample = (): void => {
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakHeap = Math.max(peakHeap, m.heapUsed);
};
const timer = setInterval(sample, 5);

const METHODS = [
  'full',
  'lora',
  'dora',
  'vera',
  'adalora',
  'pissa',
  'randlora',
  'nola',
  'salt',
  'bone',
  'svfit',
  'loldu',
  'mos',
  'snell',
  'snella',
  'dept',
  'increlora',
  'triadaptlora',
  'diffora',
  'plp',
];
const RANKS = [1, 2, 4, 8, 16];
const DATASETS = [
  'glue/mnli',
  'glue/sst2',
  'glue/mrpc',
  'glue/cola',
  'glue/qnli',
  'glue/qqp',
  'glue/rte',
  'glue/stsb',
  'vtab/cifar',
  'vtab/caltech101',
  'vtab/dtd',
  'vtab/oxford_flowers102',
  'vtab/oxford_iiit_pet',
  'vtab/svhn',
  'vtab/sun397',
  'vtab/patch_camelyon',
  'vtab/eurosat',
  'vtab/resisc45',
  'vtab/diabetic_retinopathy',
  'gsm8k',
];

interface Item {
  kind: 'json' | 'missing';
  body: string;
  opts: RecordOptions;
}

function generate(n: number): Item[] {
  const r = rng(1);
  const items: Item[] = [];
  const perSeed = METHODS.length * RANKS.length * DATASETS.length;
  for (let i = 0; i < n; i++) {
    const seed = Math.floor(i / perSeed);
    const j = i % perSeed;
    const method = METHODS[j % METHODS.length]!;
    const rank = RANKS[Math.floor(j / METHODS.length) % RANKS.length]!;
    const dataset = DATASETS[Math.floor(j / (METHODS.length * RANKS.length)) % DATASETS.length]!;
    const metric =
      dataset === 'glue/cola'
        ? 'mcc'
        : dataset === 'glue/stsb'
          ? 'pearson'
          : dataset.startsWith('vtab/')
            ? 'top1'
            : dataset === 'gsm8k'
              ? 'exact_match'
              : 'accuracy';
    const u = r();
    const opts: RecordOptions = {
      method,
      rank,
      dataset,
      seed,
      metric,
      metrics: { [metric]: 0.5 + 0.4 * r(), loss: 0.3 + r() },
      status: u < 0.01 ? 'failed' : 'succeeded',
      trainable: rank * 4096,
      total: 4_000_000,
      curve: Array.from({ length: 20 }, (_, k) => ({ step: (k + 1) * 50, loss: 2 / (k + 2) + 0.01 * r() })),
    };
    if (u > 0.99) items.push({ kind: 'missing', body: '', opts });
    else items.push({ kind: 'json', body: JSON.stringify(makeRecord(opts)), opts });
  }
  return items;
}

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

function pipeline(items: Item[]): {
  parse: number;
  aggregate: number;
  render: number;
  cpu: number;
  rows: number;
  cols: number;
} {
  const c0 = cpuMs();
  const t0 = performance.now();
  const runs: RunRow[] = items.map((it) => {
    if (it.kind === 'missing') return missingRun(runIdFor(it.opts), 'bench', labelsFor(it.opts));
    return runFromRecord(ResultRecord.parse(JSON.parse(it.body)));
  });
  const t1 = performance.now();
  const model = buildTable(runs, { baseline: 'LoRA (r=8)' });
  const t2 = performance.now();
  let chars = 0;
  for (const f of FORMATS) chars += render(model, f).length;
  const t3 = performance.now();
  if (chars === 0) throw new Error('nothing rendered');
  return {
    parse: t1 - t0,
    aggregate: t2 - t1,
    render: t3 - t2,
    cpu: cpuMs() - c0,
    rows: model.rows.length,
    cols: model.columns.length,
  };
}

const fmt = (ms: number): string => `${(ms / 1000).toFixed(3)} s`;
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;

const tg = performance.now();
const items = generate(N);
const small = items.slice(0, Math.floor(N / 10));
const genMs = performance.now() - tg;
sample();
const jsonBytes = items.reduce((s, it) => s + it.body.length, 0);
console.log(
  `table_bench: ${N.toLocaleString('en')} records (${mib(jsonBytes)} of JSON), generated in ${fmt(genMs)}; node ${process.version}`,
);

// Warm-up on the small set (JIT), then the timed runs.
pipeline(small);
const a = pipeline(small);
sample();
const heapBefore = process.memoryUsage().heapUsed;
const b = pipeline(items);
sample();
const totalSmall = a.parse + a.aggregate + a.render;
const totalBig = b.parse + b.aggregate + b.render;
console.log(`  records           parse+validate   aggregate   render(5 formats)   total wall   total CPU   table`);
console.log(
  `  ${small.length.toLocaleString('en').padStart(7)}           ${fmt(a.parse).padStart(10)}   ${fmt(a.aggregate).padStart(9)}   ${fmt(a.render).padStart(17)}   ${fmt(totalSmall).padStart(10)}   ${fmt(a.cpu).padStart(9)}   ${a.rows}×${a.cols}`,
);
console.log(
  `  ${items.length.toLocaleString('en').padStart(7)}           ${fmt(b.parse).padStart(10)}   ${fmt(b.aggregate).padStart(9)}   ${fmt(b.render).padStart(17)}   ${fmt(totalBig).padStart(10)}   ${fmt(b.cpu).padStart(9)}   ${b.rows}×${b.cols}`,
);
console.log(
  `  ratio 100k/10k: wall ${(totalBig / totalSmall).toFixed(2)}×, CPU ${(b.cpu / a.cpu).toFixed(2)}× for 10× the records (aggregate alone ${(b.aggregate / a.aggregate).toFixed(2)}× wall); CPU/wall ${(b.cpu / totalBig).toFixed(2)} (below 1: other processes shared the cores)`,
);
console.log(`  throughput: ${Math.round(items.length / (totalBig / 1000)).toLocaleString('en')} records/s end to end`);

/** Aggregate + render (every format) of the same runs by today's code and by table_v1, alternating. */
function sideBySide(runs: RunRow[], rounds: number): { now: number; v1: number } {
  const times = { now: [] as number[], v1: [] as number[] };
  for (let i = 0; i < rounds; i++) {
    for (const which of i % 2 === 0 ? (['now', 'v1'] as const) : (['v1', 'now'] as const)) {
      const t0 = performance.now();
      let chars = 0;
      if (which === 'now') {
        const m = buildTable(runs, { baseline: 'LoRA (r=8)' });
        for (const f of FORMATS) chars += render(m, f).length;
      } else {
        const m = buildTableV1(runs, { baseline: 'LoRA (r=8)' });
        for (const f of FORMATS) chars += renderV1(m, f).length;
      }
      if (chars === 0) throw new Error('nothing rendered');
      times[which].push(performance.now() - t0);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  return { now: median(times.now), v1: median(times.v1) };
}

{
  const runs: RunRow[] = items.map((it) =>
    it.kind === 'missing'
      ? missingRun(runIdFor(it.opts), 'bench', labelsFor(it.opts))
      : runFromRecord(ResultRecord.parse(JSON.parse(it.body))),
  );
  const sb = sideBySide(runs, 5);
  sample();
  console.log(
    `  side by side (${runs.length.toLocaleString('en')} runs, aggregate + render, median of 5): tables/ ${fmt(sb.now)}, table_v1 ${fmt(sb.v1)}: ratio ${(sb.now / sb.v1).toFixed(3)}`,
  );
}

if (withStore) {
  const n = Math.min(10_000, items.length);
  const dir = mkdtempSync(join(tmpdir(), 'rankflow-bench-'));
  try {
    const store = new LocalStore(dir);
    const subset = items.slice(0, n);
    const manifest: SweepManifest = {
      schema: 'rankflow.sweep/v1',
      sweep_id: 'bench',
      recipe: null,
      created_at: new Date(0).toISOString(),
      queues: {},
      runs: subset.map((it) => ({
        id: runIdFor(it.opts),
        spec: specFor(it.opts),
        labels: labelsFor(it.opts),
        params: null,
      })),
    };
    await store.put('sweeps/bench.json', JSON.stringify(manifest));
    for (const it of subset) if (it.kind === 'json') await store.put(`results/${runIdFor(it.opts)}.json`, it.body);
    const t0 = performance.now();
    const sel = await readSelection(store, ['bench']);
    const t1 = performance.now();
    buildTable(sel.runs);
    const t2 = performance.now();
    sample();
    console.log(
      `  LocalStore: read ${n.toLocaleString('en')} records in ${fmt(t1 - t0)} (${Math.round(n / ((t1 - t0) / 1000)).toLocaleString('en')} records/s), table in ${fmt(t2 - t1)}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

clearInterval(timer);
const maxRssKiB = process.resourceUsage().maxRSS;
console.log(
  `  peak memory: RSS ${mib(Math.max(peakRss, maxRssKiB * 1024))} (includes the ${mib(jsonBytes)} of input JSON strings held in memory), heap ${mib(peakHeap)} (heap before the 100k run ${mib(heapBefore)})`,
);
