/**
 * Device slots of one worker: `--gpus 0,1,2,3` gives one slot per GPU (`--runs-per-gpu N`: N per GPU),
 * `--cpu-slots N` gives N CPU slots. Each training activity holds one slot; the runtime sees only its GPU
 * through CUDA_VISIBLE_DEVICES. A free slot is taken on the device with the fewest busy slots, so runs
 * spread over the GPUs before any GPU gets a second one.
 */
export interface Slot {
  id: string;
  /** The device the slot runs on (`gpu0`, `cpu`): slots of one device share it. */
  device?: string;
  env: Record<string, string>;
}

export class SlotPool {
  private free: Slot[];
  private waiters: ((s: Slot) => void)[] = [];
  private busy = new Map<string, number>();
  readonly size: number;
  constructor(slots: Slot[]) {
    if (slots.length === 0) throw new Error('a worker needs at least one slot');
    this.free = [...slots];
    this.size = slots.length;
  }
  /** `perGpu` slots on each GPU (ids `gpu0`, or `gpu0.0`, `gpu0.1`, ... when several). */
  static gpus(ids: string[], perGpu = 1): SlotPool {
    if (!Number.isInteger(perGpu) || perGpu < 1) throw new Error('runs per GPU must be a positive integer');
    return new SlotPool(
      ids.flatMap((id) =>
        Array.from({ length: perGpu }, (_, k) => ({
          id: perGpu === 1 ? `gpu${id}` : `gpu${id}.${k}`,
          device: `gpu${id}`,
          env: { CUDA_VISIBLE_DEVICES: id },
        })),
      ),
    );
  }
  static cpu(n: number, threadsPerSlot: number): SlotPool {
    const t = String(Math.max(1, threadsPerSlot));
    return new SlotPool(
      Array.from({ length: n }, (_, i) => ({
        id: `cpu${i}`,
        env: { CUDA_VISIBLE_DEVICES: '', OMP_NUM_THREADS: t, RANKFLOW_NUM_THREADS: t },
      })),
    );
  }
  /** Busy slots per device (for tests and status). */
  busyByDevice(): Record<string, number> {
    return Object.fromEntries([...this.busy].filter(([, n]) => n > 0));
  }
  private take(s: Slot): Slot {
    const d = s.device ?? s.id;
    this.busy.set(d, (this.busy.get(d) ?? 0) + 1);
    return s;
  }
  async acquire(): Promise<Slot> {
    if (this.free.length > 0) {
      // the free slot on the least busy device (the first such, so one slot per device keeps its order)
      let best = 0;
      const load = (s: Slot): number => this.busy.get(s.device ?? s.id) ?? 0;
      this.free.forEach((s, i) => {
        if (load(s) < load(this.free[best]!)) best = i;
      });
      return this.take(this.free.splice(best, 1)[0]!);
    }
    return await new Promise<Slot>((resolve) => this.waiters.push((s) => resolve(this.take(s))));
  }
  release(s: Slot): void {
    const d = s.device ?? s.id;
    this.busy.set(d, Math.max(0, (this.busy.get(d) ?? 0) - 1));
    const w = this.waiters.shift();
    if (w) w(s);
    else this.free.push(s);
  }
}
