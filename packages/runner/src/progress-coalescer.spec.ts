import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { ProgressCoalescer } from './progress-coalescer';

type Write = [jobId: string, progress: number, message: string | null];

function setup(options: { live?: Set<string>; answer?: (call: number) => Promise<boolean | void> } = {}) {
  const writes: (Write & { at: number })[] = [];
  const errors: unknown[] = [];
  const start = Date.now();
  const coalescer = new ProgressCoalescer({
    intervalMs: 250,
    write: (jobId, progress, message) => {
      writes.push(Object.assign([jobId, progress, message] as Write, { at: Date.now() - start }));
      return options.answer?.(writes.length) ?? Promise.resolve(true);
    },
    isLive: options.live ? (jobId) => options.live!.has(jobId) : undefined,
    onError: (_jobId, error) => errors.push(error),
  });
  const plain = () => writes.map(([jobId, progress, message]) => [jobId, progress, message]);
  return { coalescer, writes, errors, plain };
}

beforeEach(() => {
  jest.useFakeTimers({ now: 1_000_000 });
});
afterEach(() => {
  jest.useRealTimers();
});

describe('ProgressCoalescer', () => {
  it('writes the first report at once, then at most one per window, the latest, and the last when the window ends', async () => {
    const { coalescer, writes, plain } = setup();
    coalescer.report('a', 0.1, 'one');
    await jest.advanceTimersByTimeAsync(0);
    expect(plain()).toEqual([['a', 0.1, 'one']]);
    for (let i = 2; i <= 9; i++) {
      coalescer.report('a', i / 10, `n${i}`);
      await jest.advanceTimersByTimeAsync(20);
    }
    expect(writes).toHaveLength(1);
    await jest.advanceTimersByTimeAsync(250);
    expect(plain()).toEqual([
      ['a', 0.1, 'one'],
      ['a', 0.9, 'n9'],
    ]);
    expect(writes[1]!.at).toBe(250);
    await jest.advanceTimersByTimeAsync(1000);
    expect(writes).toHaveLength(2);
    expect(coalescer.size).toBe(0);
  });

  it('keeps a window per job', async () => {
    const { coalescer, plain } = setup();
    coalescer.report('a', 0.5, null);
    coalescer.report('b', 0.25, null);
    coalescer.report('a', 0.6, null);
    await jest.advanceTimersByTimeAsync(0);
    expect(plain()).toEqual([
      ['a', 0.5, null],
      ['b', 0.25, null],
    ]);
    await jest.advanceTimersByTimeAsync(300);
    expect(plain()).toEqual([
      ['a', 0.5, null],
      ['b', 0.25, null],
      ['a', 0.6, null],
    ]);
  });

  it('drops a held report once the job is no longer live (its answer arrived)', async () => {
    const live = new Set(['a']);
    const { coalescer, plain } = setup({ live });
    coalescer.report('a', 0.2, null);
    coalescer.report('a', 1, 'last');
    live.delete('a');
    await jest.advanceTimersByTimeAsync(1000);
    expect(plain()).toEqual([['a', 0.2, null]]);
    expect(coalescer.size).toBe(0);
  });

  it('waits for a slow write before the next one: never two in flight for a job', async () => {
    let finish: (() => void) | undefined;
    const { coalescer, writes } = setup({
      answer: (call) => (call === 1 ? new Promise<boolean>((resolve) => (finish = () => resolve(true))) : Promise.resolve(true)),
    });
    coalescer.report('a', 0.1, null);
    coalescer.report('a', 0.2, null);
    await jest.advanceTimersByTimeAsync(2000);
    expect(writes).toHaveLength(1);
    finish?.();
    await jest.advanceTimersByTimeAsync(0);
    expect(writes.map((w) => w[1])).toEqual([0.1, 0.2]);
  });

  it('tries a report not taken again when the window ends, a few times at most', async () => {
    const { coalescer, writes } = setup({ answer: () => Promise.resolve(false) });
    coalescer.report('a', 0.3, null);
    await jest.advanceTimersByTimeAsync(5000);
    expect(writes.map((w) => w.at)).toEqual([0, 250, 500, 750, 1000]);
    expect(coalescer.size).toBe(0);
  });

  it('reports a failing write to onError and goes on', async () => {
    const { coalescer, writes, errors } = setup({
      answer: (call) => (call === 1 ? Promise.reject(new Error('redis down')) : Promise.resolve(true)),
    });
    coalescer.report('a', 0.1, null);
    coalescer.report('a', 0.2, null);
    await jest.advanceTimersByTimeAsync(300);
    expect(errors).toEqual([new Error('redis down')]);
    expect(writes.map((w) => w[1])).toEqual([0.1, 0.2]);
  });

  it('clear() drops what is held', async () => {
    const { coalescer, writes } = setup();
    coalescer.report('a', 0.1, null);
    coalescer.report('a', 0.2, null);
    coalescer.clear();
    await jest.advanceTimersByTimeAsync(1000);
    expect(writes).toHaveLength(1);
  });
});
