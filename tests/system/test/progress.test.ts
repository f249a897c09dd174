import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { uniqueId } from '@shepherd/testing';
import { echo, echoSheep, startStack, type Stack, useFreePorts } from './harness';

// Progress from a runner (the echo example's `progress_steps`) into GET /jobs/{id}/status.

const port = useFreePorts(1);

interface Seen {
  progress: number;
  message: string | null;
  /** When the poll that first showed it was sent, and when its answer came (epoch ms). */
  sentMs: number;
  answeredMs: number;
}

/** Polls the status until the job is finished; records each progress value the first time it shows. */
async function watchProgress(stack: Stack, jobId: string): Promise<{ seen: Seen[]; final: Record<string, unknown> }> {
  const seen: Seen[] = [];
  const deadline = Date.now() + 30_000;
  for (;;) {
    const sentMs = performance.timeOrigin + performance.now();
    const status = (await (await fetch(`${stack.url}/jobs/${jobId}/status`)).json()) as Record<string, unknown>;
    const answeredMs = performance.timeOrigin + performance.now();
    if (status.status === 'done' || status.status === 'failed') return { seen, final: status };
    if (status.status === 'processing' && typeof status.progress === 'number' && seen.at(-1)?.progress !== status.progress) {
      seen.push({ progress: status.progress, message: (status.progress_message as string | null) ?? null, sentMs, answeredMs });
    }
    if (Date.now() > deadline) throw new Error(`job ${jobId} did not finish; last status ${JSON.stringify(status)}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function result(stack: Stack, jobId: string): Promise<{ progress_sent_ms: number[] }> {
  return (await (await fetch(`${stack.url}/jobs/${jobId}/result`)).json()) as { progress_sent_ms: number[] };
}

const ms = (value: number): string => `${value.toFixed(1)} ms`;

describe('runner progress in the job status', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ sheep: { bare1: echoSheep(port(0)) } });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('shows progress while processing (coalesced), and the final status is done', async () => {
    // A first job loads the model, so the timed one meets a warm runner.
    const warm = uniqueId('job');
    expect((await stack.submit({ job_id: warm, model: echo(), payload: '{}' })).status).toBe(200);
    await stack.waitReady(warm);

    const jobId = uniqueId('job');
    expect((await stack.submit({ job_id: jobId, model: echo(), payload: JSON.stringify({ progress_steps: 5, sleep_ms: 1000 }) })).status).toBe(200);
    const { seen, final } = await watchProgress(stack, jobId);
    expect(final).toMatchObject({ status: 'done', model: echo() });
    expect(seen.length).toBeGreaterThanOrEqual(2);
    for (const { progress, message } of seen) {
      const step = Math.round(progress * 5);
      expect(progress).toBeCloseTo(step / 5, 10);
      expect(message).toBe(`step ${step}/5`);
    }
    // Never backwards: the coalescer keeps the latest.
    expect(seen.map((s) => s.progress)).toEqual([...seen.map((s) => s.progress)].sort((a, b) => a - b));

    const sent = (await result(stack, jobId)).progress_sent_ms;
    expect(sent).toHaveLength(5);
    const lines = seen.map(({ progress, sentMs, answeredMs }) => {
      const at = sent[Math.round(progress * 5) - 1] ?? Number.NaN;
      return `  step ${Math.round(progress * 5)}/5: shown by a poll sent ${ms(sentMs - at)} after the runner sent it (answer at ${ms(answeredMs - at)})`;
    });
    process.stdout.write(`progress of a 5-step job as polls saw it (250 ms coalescing window):\n${lines.join('\n')}\n`);
  });

  it('measures runner → status latency of a first report on an idle stack', async () => {
    // progress_steps 2 over 1 s: the first report (0.5, at 500 ms) opens a fresh window, so it is written at once.
    const samples: { low: number; high: number }[] = [];
    for (let i = 0; i < 5; i++) {
      const jobId = uniqueId('job');
      expect((await stack.submit({ job_id: jobId, model: echo(), payload: JSON.stringify({ progress_steps: 2, sleep_ms: 1000 }) })).status).toBe(200);
      const { seen, final } = await watchProgress(stack, jobId);
      expect(final).toMatchObject({ status: 'done' });
      const first = seen.find((s) => s.progress === 0.5);
      expect(first).toBeDefined();
      const at = (await result(stack, jobId)).progress_sent_ms[0] ?? Number.NaN;
      // It became visible between the previous poll and this one: at most `high`, and polls run every ~5 ms.
      samples.push({ low: first!.sentMs - at, high: first!.answeredMs - at });
    }
    const highs = samples.map((s) => s.high).sort((a, b) => a - b);
    process.stdout.write(
      `runner ProgressMessage → GET /jobs/{id}/status, idle, first report of a job (${samples.length} jobs):\n` +
        samples.map((s) => `  poll sent +${ms(s.low)}, answered +${ms(s.high)}`).join('\n') +
        `\n  median upper bound ${ms(highs[Math.floor(highs.length / 2)]!)}\n`,
    );
  });
});
