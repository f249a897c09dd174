import { describe, expect, it } from '@jest/globals';
import { canTransition, isFinished, jobStatus, JobStatusSchema, lifeOf, statesBefore, type JobState } from './index';

const model = { name: 'm', version: '1' };

describe('the job life', () => {
  it('lets a job move forward and never out of a final state', () => {
    const path: JobState[] = ['accepted', 'queued', 'processing', 'done'];
    for (let i = 1; i < path.length; i += 1) expect(canTransition(path[i - 1]!, path[i]!)).toBe(true);
    for (const final of ['done', 'failed', 'cancelled'] as const) {
      for (const next of ['accepted', 'queued', 'processing', 'done', 'failed', 'cancelled'] as const) {
        expect(canTransition(final, next)).toBe(false);
      }
    }
    expect(canTransition('processing', 'queued')).toBe(true); // handed back
    expect(canTransition('queued', 'done')).toBe(false); // done only after a runner had it
    expect(canTransition(null, 'done')).toBe(true); // nothing known: the durable record decides
  });

  it('lists the states a transition may start from', () => {
    expect(statesBefore('queued').sort()).toEqual(['accepted', 'processing']);
    expect(statesBefore('done')).toEqual(['processing']);
    expect(statesBefore('processing').sort()).toEqual(['accepted', 'processing', 'queued']);
    expect(statesBefore('accepted')).toEqual([]);
  });

  it('builds every record in the shape the original answers', () => {
    const enqueuedAt = '2026-12-01T10:00:00.000Z';
    const queued = jobStatus.queued({ model, enqueuedAt });
    expect(queued).toEqual({ status: 'queued', model, enqueued_at: enqueuedAt });
    const processing = jobStatus.processing(lifeOf(queued));
    const failed = jobStatus.failed(lifeOf(processing), { message: 'boom' });
    for (const status of [jobStatus.accepted(model), queued, processing, jobStatus.done(lifeOf(processing)), failed]) {
      expect(JobStatusSchema.parse(status)).toEqual(status);
    }
    expect(failed).toMatchObject({ enqueued_at: enqueuedAt, processing_started_at: processing.processing_started_at, error_details: { message: 'boom' } });
    expect(isFinished(failed)).toBe(true);
    expect(isFinished(processing)).toBe(false);
  });
});
