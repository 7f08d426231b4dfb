/**
 * The sweep workflow's bookkeeping: what runs, what waits, what has ended, and the state carried across
 * continue-as-new. Pure (no Temporal calls, no I/O, no clock): `workflows/sweep.ts` does the starting, the
 * paging and the waiting, and tells the book what happened.
 */
import type { Activities } from '../activities/index.js';
import type { RunOutcome, RunState, SweepInput, SweepStatus } from '../schemas/orchestration.js';

export type Entry = Awaited<ReturnType<Activities['loadSweepPage']>>[number];
export type UpstreamState = 'running' | 'succeeded' | 'failed';
type Carried = NonNullable<SweepInput['state']>;
export type Readiness = { state: 'ready' | 'waiting' } | { state: 'blocked'; dep: string };

/** `status` names the last 50 failures (the state carried across continue-as-new keeps no more). */
const FAILURES_KEPT = 50;

/**
 * Stages: which waiting runs may start. A run waits until every run it reads from (`entry.after`) has
 * succeeded; when one failed (or was itself blocked) the run is blocked. `upstream` holds the outcomes of the
 * runs that others read from (`entry.needed`); runs nobody reads from are not tracked.
 */
export function readiness(after: readonly string[], upstream: Record<string, UpstreamState>): Readiness {
  const failedDep = after.find((id) => upstream[id] === 'failed');
  if (failedDep) return { state: 'blocked' as const, dep: failedDep };
  return { state: after.every((id) => upstream[id] === 'succeeded') ? ('ready' as const) : ('waiting' as const) };
}

function emptyCounts(): Record<RunState, number> {
  return { pending: 0, running: 0, succeeded: 0, failed: 0, skipped: 0, cancelled: 0, blocked: 0 };
}

const NEW_SWEEP: Carried = { next_index: 0, running: [], outcomes: {}, failed: [], paused: false, generation: 0 };

export class SweepBook {
  readonly running: Set<string>;
  readonly outcomes: Record<string, number>;
  readonly failed: RunOutcome[];
  readonly generation: number;
  paused: boolean;
  cancelled = false;
  /** The manifest index of the next run to read. */
  nextIndex: number;
  /** Runs this sweep waits for because another sweep runs them (`awaitExternalRun`). */
  externalWaits = 0;
  /** The manifest page being read (not carried: the next generation reads it again from `nextIndex`). */
  buffer: Entry[] = [];
  /** Stages: outcomes of runs that later runs read from, and the runs waiting for them (by manifest index). */
  readonly upstream: Record<string, UpstreamState>;
  readonly needed: Set<string>;
  readonly waiting: Map<number, Entry | null>;

  constructor(readonly input: SweepInput) {
    const st = input.state ?? NEW_SWEEP;
    this.running = new Set(st.running);
    this.outcomes = { ...st.outcomes };
    this.failed = [...st.failed];
    this.paused = st.paused;
    this.nextIndex = st.next_index;
    this.generation = st.generation;
    this.upstream = { ...(st.upstream ?? {}) };
    this.needed = new Set(Object.keys(this.upstream));
    this.waiting = new Map((st.waiting ?? []).map((i) => [i, null]));
  }

  private count(state: RunState): void {
    this.outcomes[state] = (this.outcomes[state] ?? 0) + 1;
  }

  /** A run ended (its signal or its close, whichever comes first; the second is ignored). */
  finish(o: RunOutcome): void {
    if (!this.running.delete(o.run_id)) return; // duplicate or unknown notification
    this.count(o.state);
    if (o.state === 'failed') this.failed.push(o);
    if (this.needed.has(o.run_id))
      this.upstream[o.run_id] = o.state === 'succeeded' || o.state === 'skipped' ? 'succeeded' : 'failed';
  }

  /** A run was recorded as blocked (never started). */
  blocked(entry: Entry): void {
    this.count('blocked');
    if (entry.needed) this.upstream[entry.input.run_id] = 'failed';
  }

  /**
   * The next manifest entry has been read: `skipped` when its result exists, else its readiness. A waiting
   * entry is held in `waiting`; the caller starts a ready one and records a blocked one.
   */
  admit(entry: Entry): Readiness | { state: 'skipped' } {
    const index = this.nextIndex++;
    const id = entry.input.run_id;
    if (entry.needed) {
      this.needed.add(id);
      this.upstream[id] = 'running'; // until it reports (tracked across continue-as-new)
    }
    if (entry.done) {
      this.count('skipped');
      if (entry.needed) this.upstream[id] = 'succeeded';
      return { state: 'skipped' };
    }
    const r = readiness(entry.after ?? [], this.upstream);
    if (r.state === 'waiting') this.waiting.set(index, entry);
    return r;
  }

  /** Whether another manifest entry may be read, with `starting` runs about to start. */
  mayRead(starting: number): boolean {
    return (
      !this.paused &&
      !this.cancelled &&
      this.running.size + starting < this.input.concurrency &&
      this.nextIndex < this.input.total
    );
  }

  readinessOf(entry: Entry): Readiness {
    return readiness(entry.after ?? [], this.upstream);
  }

  /** The upstream run that keeps `entry` waiting (for the message of a run blocked at the end). */
  unsettledDep(entry: Entry): string {
    return (entry.after ?? []).find((id) => this.upstream[id] !== 'succeeded') ?? '(unknown)';
  }

  /** Some waiting run can start or must be blocked (or has not been read back since continue-as-new). */
  settledWaiting(): boolean {
    return [...this.waiting.values()].some((e) => e === null || this.readinessOf(e).state !== 'waiting');
  }

  private manifestRead(): boolean {
    return this.nextIndex >= this.input.total;
  }

  allDone(): boolean {
    return this.manifestRead() && this.running.size === 0 && this.waiting.size === 0;
  }

  /**
   * Nothing runs and nothing will: the runs the waiting ones wait for are not in this sweep (never happens for
   * planned manifests, whose upstream runs come first).
   */
  stuck(): boolean {
    return this.manifestRead() && this.running.size === 0 && this.waiting.size > 0 && !this.settledWaiting();
  }

  /** Whether the sweep has something to do (besides rolling over): the condition it sleeps on. */
  awake(): boolean {
    return (
      this.cancelled ||
      this.allDone() ||
      (!this.paused && this.running.size < this.input.concurrency && (!this.manifestRead() || this.settledWaiting())) ||
      (this.manifestRead() && this.running.size === 0)
    );
  }

  status(): SweepStatus {
    const counts = emptyCounts();
    for (const [k, v] of Object.entries(this.outcomes)) counts[k as RunState] = v;
    counts.running = this.running.size;
    counts.pending = this.input.total - this.nextIndex + this.waiting.size;
    return {
      sweep_id: this.input.sweep_id,
      total: this.input.total,
      counts,
      running: [...this.running],
      failed: this.failed.slice(-FAILURES_KEPT),
      paused: this.paused,
      cancelled: this.cancelled,
      generation: this.generation,
    };
  }

  /** The state the next generation starts from (continue-as-new). */
  carried(): Carried {
    return {
      next_index: this.nextIndex,
      running: [...this.running],
      outcomes: this.outcomes,
      failed: this.failed.slice(-FAILURES_KEPT),
      paused: this.paused,
      generation: this.generation + 1,
      ...(this.needed.size ? { upstream: this.upstream } : {}),
      ...(this.waiting.size ? { waiting: [...this.waiting.keys()] } : {}),
    };
  }
}
