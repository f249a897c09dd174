import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { uniqueId } from '@shepherd/testing';
import { limitsOf } from '../src/jobs/submit';
import { model, postJson, startGateway, storageSection, type Harness } from './harness';

describe('listing jobs', () => {
  let gw: Harness;
  beforeAll(async () => {
    gw = await startGateway({ storage: storageSection('filesystem') });
  });
  afterAll(async () => gw.close());

  async function submitMany(count: number, tag: string): Promise<string[]> {
    const ids = Array.from({ length: count }, (_, i) => `${tag}-${String(i).padStart(5, '0')}`);
    for (let i = 0; i < ids.length; i += 25) {
      const answers = await Promise.all(ids.slice(i, i + 25).map((jobId) => postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' })));
      for (const answer of answers) expect(answer.status).toBe(200);
    }
    return ids;
  }

  it('pages through 1,000 jobs newest first with no duplicate and no gap while jobs are being added', async () => {
    const first = await submitMany(1000, uniqueId('a'));
    const seen: string[] = [];
    let cursor: string | null = null;
    let adding: Promise<string[]> | null = null;
    let pages = 0;
    do {
      const url: string = `${gw.url}/jobs?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const answer = await fetch(url);
      expect(answer.status).toBe(200);
      const page = (await answer.json()) as { jobs: Array<{ job_id: string; status: string; enqueued_at: string }>; next_cursor: string | null };
      seen.push(...page.jobs.map((job) => job.job_id));
      for (let i = 1; i < page.jobs.length; i++) expect(page.jobs[i - 1]!.enqueued_at >= page.jobs[i]!.enqueued_at).toBe(true);
      cursor = page.next_cursor;
      pages += 1;
      adding ??= submitMany(300, uniqueId('b')); // new jobs arrive while the client pages
    } while (cursor);
    await adding;
    expect(pages).toBeGreaterThanOrEqual(10);
    expect(new Set(seen).size).toBe(seen.length); // no duplicate
    const listed = new Set(seen);
    expect(first.filter((jobId) => !listed.has(jobId))).toEqual([]); // no gap
  });

  it('filters by status and model, and refuses a bad query or cursor', async () => {
    const jobId = uniqueId('job');
    const other = { name: 'other', version: 'v9' };
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model: other, payload: 'x' })).status).toBe(200);
    const byModel = (await (await fetch(`${gw.url}/jobs?model=other:v9`)).json()) as { jobs: Array<{ job_id: string; status: string }> };
    expect(byModel.jobs.map((job) => job.job_id)).toEqual([jobId]);
    await gw.statuses.write(jobId, { status: 'processing', model: other });
    const processing = (await (await fetch(`${gw.url}/jobs?status=processing`)).json()) as { jobs: Array<{ job_id: string }> };
    expect(processing.jobs.map((job) => job.job_id)).toEqual([jobId]);
    for (const bad of ['limit=0', 'limit=1001', 'limit=ten', 'status=finished', 'cursor=not-a-cursor', 'colour=red']) {
      const answer = await fetch(`${gw.url}/jobs?${bad}`);
      expect({ bad, status: answer.status }).toEqual({ bad, status: 400 });
    }
  });
});

describe('the limits a job gets', () => {
  const base = { job_id: 'j', model: { name: 'ocr', version: 'v2' } };
  const config = (worker: Record<string, number | undefined>, models: Record<string, { timeoutMs?: number; queueTimeoutMs?: number }> = {}) =>
    ({ worker, models }) as never;

  it('takes the request, then the model version, then the model, then the worker default, capped', () => {
    const models = { ocr: { timeoutMs: 60_000 }, 'ocr:v2': { timeoutMs: 120_000, queueTimeoutMs: 5000 } };
    expect(limitsOf({ ...base, timeout: 3 }, config({}, models)).timeoutMs).toBe(3000);
    expect(limitsOf(base, config({}, models)).timeoutMs).toBe(120_000);
    expect(limitsOf({ ...base, model: { name: 'ocr', version: 'v1' } }, config({}, models)).timeoutMs).toBe(60_000);
    expect(limitsOf({ ...base, model: { name: 'x', version: 'v1' } }, config({ jobTimeoutMs: 7000 })).timeoutMs).toBe(7000);
    expect(limitsOf({ ...base, timeout: 999 }, config({ maxJobTimeoutMs: 10_000 }, models)).timeoutMs).toBe(10_000);
    expect(limitsOf({ ...base, model: { name: 'x', version: 'v1' } }, config({ maxJobTimeoutMs: 10_000 })).timeoutMs).toBe(10_000);
    expect(limitsOf({ ...base, model: { name: 'x', version: 'v1' } }, config({})).timeoutMs).toBeUndefined();
    expect(limitsOf(base, config({}, models)).startBy).toBeGreaterThan(Date.now());
    expect(limitsOf({ ...base, priority: 0 }, config({})).priority).toBeUndefined();
    expect(limitsOf({ ...base, priority: 7 }, config({})).priority).toBe(7);
  });
});
