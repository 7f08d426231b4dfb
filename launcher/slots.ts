/**
 * Device slots of one worker: `--gpus 0,1,2,3` gives one slot per GPU, `--cpu-slots N` gives N CPU slots.
 * Each training activity holds one slot; the runtime sees only its GPU through CUDA_VISIBLE_DEVICES.
 */
export interface Slot {
  id: string;
  env: Record<string, string>;
}

export class SlotPool {
  private free: Slot[];
  private waiters: ((s: Slot) => void)[] = [];
  readonly size: number;
  constructor(slots: Slot[]) {
    if (slots.length === 0) throw new Error('a worker needs at least one slot');
    this.free = [...slots];
    this.size = slots.length;
  }
  static gpus(ids: string[]): SlotPool {
    return new SlotPool(ids.map((id) => ({ id: `gpu${id}`, env: { CUDA_VISIBLE_DEVICES: id } })));
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
  async acquire(): Promise<Slot> {
    const s = this.free.shift();
    if (s) return s;
    return await new Promise<Slot>((resolve) => this.waiters.push(resolve));
  }
  release(s: Slot): void {
    const w = this.waiters.shift();
    if (w) w(s);
    else this.free.push(s);
  }
}
