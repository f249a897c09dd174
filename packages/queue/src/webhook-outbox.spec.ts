import { describe, expect, it } from '@jest/globals';
import { jobStatus, type JobStatus } from '@shepherd/contracts';
import { retryPlan, webhookEventOf, webhookMessageId } from './webhook-outbox';
import type { StatusChange } from './status-store';

const model = { name: 'echo', version: 'v1' };
const enqueuedAt = '2026-01-01T00:00:00.000Z';
const queued = jobStatus.queued({ model, enqueuedAt });
const processing = jobStatus.processing({ model, enqueuedAt });
const change = (before: JobStatus | null, after: JobStatus, type: StatusChange['type'] = 'status'): StatusChange => ({ jobId: 'j1', eventId: '17-0', type, before, after });

describe('webhook outbox', () => {
  it('names the event of a change: start on the first move to processing, completed on a final state', () => {
    expect(webhookEventOf(change(null, queued))).toBeNull();
    expect(webhookEventOf(change(queued, processing))).toBe('start');
    expect(webhookEventOf(change(processing, processing))).toBeNull(); // taken up again after its worker died
    expect(webhookEventOf(change(processing, processing, 'progress'))).toBe('progress');
    expect(webhookEventOf(change(processing, jobStatus.done({ model })))).toBe('completed');
    expect(webhookEventOf(change(queued, jobStatus.failed({ model }, { message: 'x' })))).toBe('completed');
    expect(webhookEventOf(change(queued, jobStatus.cancelled({ model })))).toBe('completed');
  });

  it('gives deterministic message ids: one start per submit, one progress per 500 ms window', () => {
    expect(webhookMessageId(change(queued, processing), 'start', 0)).toBe(`j1@start@${Date.parse(enqueuedAt)}`);
    expect(webhookMessageId(change(processing, processing, 'progress'), 'progress', 1499)).toBe('j1@progress@2');
    expect(webhookMessageId(change(processing, processing, 'progress'), 'progress', 1500)).toBe('j1@progress@3');
    expect(webhookMessageId(change(processing, jobStatus.done({ model })), 'completed', 0)).toBe('j1@17-0');
  });

  it('spreads the retries over about retry_for with exponential backoff', () => {
    const span = (plan: ReturnType<typeof retryPlan>) => plan.backoff.delay * (2 ** (plan.attempts - 1) - 1);
    const hour = retryPlan(3_600_000);
    expect(hour).toEqual({ attempts: 13, backoff: { type: 'exponential', delay: 1000 } });
    for (const retryFor of [1000, 10_000, 60_000, 3_600_000, 24 * 3_600_000]) {
      const ratio = span(retryPlan(retryFor)) / retryFor;
      expect(ratio).toBeGreaterThan(0.7);
      expect(ratio).toBeLessThan(1.42);
    }
    expect(retryPlan(0).attempts).toBe(1);
  });
});
