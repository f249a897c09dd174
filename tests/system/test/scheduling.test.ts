import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { uniqueId, waitFor } from '@shepherd/testing';
import { echo, echoSheep, startStack, type Stack, useFreePorts } from './harness';

const port = useFreePorts(2);

describe('scheduling across sheep', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ sheep: { s1: echoSheep(port(0)), s2: echoSheep(port(1)) } });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('runs 40 interleaved jobs of 2 models on both sheep with few model swaps', async () => {
    const jobs = Array.from({ length: 40 }, (_, i) => ({ jobId: `${uniqueId('mix')}-${i}`, model: echo(i % 2 === 0 ? 'v1' : 'v2') }));
    for (const { jobId, model } of jobs) {
      expect((await stack.submit({ job_id: jobId, model, payload: '{"sleep_ms": 20}' })).status).toBe(200);
    }
    const results = await Promise.all(
      jobs.map(async ({ jobId, model }) => {
        expect((await stack.waitReady(jobId)).status).toBe('done');
        const output = await (await fetch(`${stack.url}/jobs/${jobId}/result`)).json();
        expect(output.model).toEqual(model); // each job ran on a runner of its own model
        return output.pid as number;
      }),
    );
    const loads = ((await stack.sheepState('s1'))?.modelLoads ?? 0) + ((await stack.sheepState('s2'))?.modelLoads ?? 0);
    expect(new Set(results).size).toBeGreaterThanOrEqual(2); // both sheep worked
    expect(loads).toBeGreaterThanOrEqual(2);
    expect(loads).toBeLessThanOrEqual(4); // round robin would restart runners ~40 times
  });

  it('runs a job pinned with sheep_id on that sheep only', async () => {
    const pinned = await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const jobId = `${uniqueId('pin')}-${i}`;
        await stack.submit({ job_id: jobId, model: echo('v1'), payload: '{}', sheep_id: 's2' });
        return jobId;
      }),
    );
    const pids = new Set<number>();
    for (const jobId of pinned) {
      expect((await stack.waitReady(jobId)).status).toBe('done');
      pids.add((await (await fetch(`${stack.url}/jobs/${jobId}/result`)).json()).pid);
    }
    expect(pids.size).toBe(1);
    await waitFor(async () => (await stack.sheepState('s2'))?.model?.version === 'v1', 5000, 's2 to report model v1');
  });
});
