/**
 * Device slots (launcher/slots.ts): `--gpus 0,1 --runs-per-gpu N` gives N slots per GPU, each seeing only
 * its GPU; runs spread over the GPUs before any GPU gets a second one; a released slot goes to a waiting
 * run. Pure logic (no GPU needed).
 */
import { describe, expect, it } from 'vitest';
import { SlotPool, type Slot } from '../launcher/slots.js';

describe('slot pool', () => {
  it('one slot per GPU by default, ids unchanged', async () => {
    const p = SlotPool.gpus(['0', '1']);
    expect(p.size).toBe(2);
    const a = await p.acquire();
    const b = await p.acquire();
    expect([a.id, b.id]).toEqual(['gpu0', 'gpu1']);
    expect([a.env.CUDA_VISIBLE_DEVICES, b.env.CUDA_VISIBLE_DEVICES]).toEqual(['0', '1']);
  });

  it('N runs per GPU: N slots each, spread over the GPUs, each run sees only its GPU', async () => {
    const p = SlotPool.gpus(['0', '1'], 3);
    expect(p.size).toBe(6);
    const got: Slot[] = [];
    for (let i = 0; i < 4; i++) got.push(await p.acquire());
    expect(got.map((s) => s.env.CUDA_VISIBLE_DEVICES)).toEqual(['0', '1', '0', '1']);
    expect(new Set(got.map((s) => s.id)).size).toBe(4);
    expect(p.busyByDevice()).toEqual({ gpu0: 2, gpu1: 2 });
    // GPU 1 frees both its runs: the next two runs go there, not to the busier GPU 0
    p.release(got[1]!);
    p.release(got[3]!);
    const n1 = await p.acquire();
    expect(n1.env.CUDA_VISIBLE_DEVICES).toBe('1');
    const n2 = await p.acquire();
    expect(n2.env.CUDA_VISIBLE_DEVICES).toBe('1');
    expect(p.busyByDevice()).toEqual({ gpu0: 2, gpu1: 2 });
    const last = [await p.acquire(), await p.acquire()];
    expect(last.map((s) => s.env.CUDA_VISIBLE_DEVICES).sort()).toEqual(['0', '1']);
    expect(p.busyByDevice()).toEqual({ gpu0: 3, gpu1: 3 });
  });

  it('a full pool makes the next run wait for a released slot', async () => {
    const p = SlotPool.gpus(['3'], 2);
    const a = await p.acquire();
    await p.acquire();
    let got: Slot | null = null;
    const waiting = p.acquire().then((s) => (got = s));
    await Promise.resolve();
    expect(got).toBeNull();
    p.release(a);
    await waiting;
    expect(got!.id).toBe(a.id);
    expect(got!.env.CUDA_VISIBLE_DEVICES).toBe('3');
    expect(p.busyByDevice()).toEqual({ gpu3: 2 });
  });

  it('refuses a runs-per-GPU that is not a positive integer', () => {
    expect(() => SlotPool.gpus(['0'], 0)).toThrow(/positive integer/);
    expect(() => SlotPool.gpus(['0'], 1.5)).toThrow(/positive integer/);
  });
});
