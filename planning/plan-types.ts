/**
 * The data passed between the planner's phases (planning/planner.ts has the overview):
 * `resolveRecipe` (resolve.ts) turns a Recipe into a `ResolvedRecipe` — the model spec, datasets and method
 * entries with their settings composed and checked, seeds, ranks, zip combinations, budget levels, overrides and
 * exclude rules; `choosePlans` (budget.ts) picks every entry's ranks / budget-matched settings per dataset and
 * zip combination (`CellPlan`s, building `Cell`s with cells.ts); `expandPlans` (expand.ts) expands the cells to
 * runs with ids (ids.ts) and `assignSettings` (labels.ts) labels them.
 */
import type { MethodDescription } from '../schemas/describe.js';
import type {
  Budget,
  DatasetEntry,
  ExcludeRule,
  MethodEntry,
  Override,
  Recipe,
  TrainingLayer,
} from '../schemas/recipe.js';
import type { DatasetSpec, ModelSpec, PlannedRun, RunSpec } from '../schemas/runspec.js';
import type { DatasetDefaults } from './catalog.js';
import type { IncrementalSha256 } from './hash.js';
import type { FieldPath, IssueList, PlanIssue } from './issues.js';

export interface CountResult {
  trainable: number;
  total: number;
  /**
   * Trainable count of the final pattern, for methods that move rank during training (AdaLoRA's kept
   * triplets, IncreLoRA/TriAdaptLoRA after growth, DiffoRA's selection); absent or equal to `trainable`
   * otherwise. Budget matching compares this one.
   */
  final?: number;
  /**
   * False: an estimate, because the method chooses ranks from the weights (LoRD `rank_rule: energy | ratio`);
   * the trained model's count is in the run's result record. Absent: exact.
   */
  exact?: boolean;
  /** The task head's share of `trainable` (absent without a head). */
  head?: number;
}
/** Counts by `countKey(spec)`; null marks a spec the runtime could not count (e.g. a rank too large). */
export type CountTable = Record<string, CountResult | null>;

export interface PlanOptions {
  /** Method registry: `methods` of `describe` (or of `schemas/methods.generated.json`). */
  methods: Record<string, MethodDescription>;
  counts?: CountTable;
  /** Overrides the recipe's `max_runs`. */
  maxRuns?: number;
  /** Dataset families of `describe` (the snapshot's `datasets`): tasks, metrics, option schemas. */
  datasets?: Record<string, unknown>;
  /** Another SHA-256 implementation for the run ids (bench/plan_bench.ts compares two); default planning/hash.ts. */
  sha256?: () => IncrementalSha256;
}

export interface PlanResult {
  /** The runs (empty when there are issues or when counts are missing). */
  runs: PlannedRun[];
  issues: PlanIssue[];
  /** Non-fatal remarks (an exclude rule that matches nothing, an override that selects nothing). */
  warnings: PlanIssue[];
  /** Specs budget matching needs counted (deduplicated by count key); non-empty only when counts were missing. */
  countRequests: RunSpec[];
  /** Number of grid combinations before exclude rules and deduplication. */
  gridSize: number;
}

export type Task = ModelSpec['task'];

/** What every phase reads: the recipe, the options, the issue lists and the registries. */
export interface PlanContext {
  recipe: Recipe;
  opts: PlanOptions;
  issues: IssueList;
  warnings: IssueList;
  registry: Record<string, MethodDescription>;
  methodNames: string[];
  allDatasets: string[];
  /** A dataset's defaults: a benchmark's from the catalogue, your own data's from its column mapping. */
  datasetDefaults(name: string, entry?: Partial<DatasetEntry>): DatasetDefaults | null;
}

/** A training layer of the recipe and where it was written. */
export interface Layer {
  path: FieldPath;
  data: TrainingLayer;
}

export interface ResolvedDataset {
  name: string;
  /** What tables group by: the name, plus the evaluated split when it is not the default (`glue/mnli-mm`). */
  label: string;
  path: FieldPath;
  spec: DatasetSpec;
  layers: Layer[];
}

export interface OptionAxis {
  key: string;
  values: unknown[];
}

/** Method options: fixed values and grid axes. */
export interface ResolvedOptions {
  fixed: Record<string, unknown>;
  axes: OptionAxis[];
}

export interface ResolvedMethod {
  path: FieldPath;
  name: string;
  label: string | null;
  desc: MethodDescription;
  options: ResolvedOptions;
  ranks: number[] | null;
  targets: string[];
  layers: Layer[];
  matchBy: MethodEntry['match_by'];
  tags: string[];
  /** include rules: restrict datasets / seeds */
  datasets: string[] | null;
  seeds: number[] | null;
  isInclude: boolean;
}

/** One position of the zip groups (their product): training values and perhaps a rank. */
export interface ZipCombo {
  training: TrainingLayer;
  rank: number | undefined;
}

/** Phase 1's output: the recipe resolved and checked. */
export interface ResolvedRecipe {
  model: ModelSpec;
  datasets: ResolvedDataset[];
  datasetByName: Map<string, ResolvedDataset>;
  methods: ResolvedMethod[];
  includes: ResolvedMethod[];
  seeds: number[];
  recipeRanks: number[] | null;
  zipCombos: ZipCombo[];
  budget: Budget | undefined;
  budgetLevels: number[];
  overrides: Override[];
  excludes: ExcludeRule[];
  /** Resolve a dataset named later (by an include rule) the way the recipe's datasets were. */
  resolveDataset(entry: DatasetEntry | { name: string }, path: FieldPath, namePath: FieldPath): ResolvedDataset | null;
  /** Resolve a method named later (the budget's reference method) the way the recipe's methods were. */
  resolveMethod(entry: MethodEntry, path: FieldPath): ResolvedMethod | null;
}

/**
 * One (method entry, dataset, rank or budget choice, zip combination): its training fields split into fixed
 * values and grid axes, its options, targets and seeds. Expanding a cell gives its runs.
 */
export interface Cell {
  mm: ResolvedMethod;
  d: ResolvedDataset;
  rank: number | null;
  /** training axes in field order: [field, group|null, values] */
  trainAxes: { field: string; group: string | null; values: unknown[] }[];
  trainFixed: Record<string, unknown>;
  evalBatchFollows: boolean;
  options: ResolvedOptions;
  targets: string[];
  seeds: number[];
}

/** A rank (or budget-matched setting) chosen for an entry: the rank, an option patch, the budget tag. */
export interface RankChoice {
  rank: number | null;
  patch?: Record<string, unknown>;
  tag: string | null;
}

/** Phase 2's output, one per (entry, dataset, zip combination): the choices to expand. */
export interface CellPlan {
  mm: ResolvedMethod;
  d: ResolvedDataset;
  z: ZipCombo;
  choices: RankChoice[];
}

/** What the labels of a run are computed from besides its spec. */
export interface RunMeta {
  entry: ResolvedMethod;
  budgetTag: string | null;
}
