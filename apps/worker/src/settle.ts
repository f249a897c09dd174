import { UnrecoverableError } from 'bullmq';
import { withFields } from '@shepherd/logging';
import type { Logger } from 'pino';
import type { WorkerConfig } from '@shepherd/config';
import { isFinished, jobStatus, lifeOf, type ErrorDetails, type JobLife, type JobState, type JobStatus } from '@shepherd/contracts';
import type { MetricsStore, RedisClient, RedisKeys, StatusStore, TransitionOptions, TransitionResult } from '@shepherd/queue';
import type { HeldJob, Outcome } from './job-run';
import type { RejectedJob } from './job-source';
import type { Staging } from './staging';

/** Longest wait of a handed-back job. */
const MAX_HAND_BACK_DELAY_MS = 60_000;
/** The states a job may end from; the state machine narrows it further (done only from processing). */
const ENDED_FROM: JobState[] = ['processing', 'queued', 'accepted'];

/** What settling did. */
export interface Settled {
  /** The status written, or null when none was (refused, unrecordable or not needed). */
  status: JobState | null;
  /** Where the BullMQ job went; null when the move failed (its lock lapses and BullMQ takes it back). */
  movedTo: 'completed' | 'failed' | 'wait' | 'delayed' | null;
  /** On a counted hand-back: the times the job was handed back, this one included, and its wait. */
  handBacks?: number;
  delayMs?: number;
}

export interface SettlerOptions {
  sheepId: string;
  redis: RedisClient;
  keys: RedisKeys;
  statuses: StatusStore;
  metrics: MetricsStore;
  staging: Staging;
  worker: Pick<WorkerConfig, 'maxHandBacks' | 'handBackDelayMs'>;
  log: Logger;
}

type Written = TransitionResult | { error: Error };

/**
 * Records how a job ended: its status through the state machine, its
 * BullMQ job moved to completed, failed, wait or delayed, the metrics, and
 * its staging directory removed. Never throws: what cannot be recorded
 * becomes a counted, delayed hand-back, and past the bound a failure.
 */
export class Settler {
  constructor(private readonly options: SettlerOptions) {}

  async settle(held: HeldJob, outcome: Outcome): Promise<Settled> {
    const log = withFields(this.options.log, { jobId: held.data.jobId });
    try {
      await held.processingWritten; // `processing` lands before the final status
      switch (outcome.kind) {
        case 'done':
          return await this.done(held, log);
        case 'failed':
          return await this.failed(held, outcome.details, log, { dataGone: outcome.dataGone, timedOut: outcome.timedOut });
        case 'cancelled':
          return await this.cancelled(held, log);
        case 'alreadyFinal':
          return await this.mirror(held, outcome.status, log);
        case 'handBack':
          if (!outcome.counts) return await this.handBack(held, log);
          return await this.countedHandBack(held, outcome.reason, log, outcome.atOnce);
      }
    } catch (error) {
      log.error({ err: error }, 'could not settle the job; it returns when its lock lapses');
      return { status: null, movedTo: null };
    } finally {
      await this.options.staging.remove(held.data.jobId).catch(() => undefined);
    }
  }

  /** Fails a job that did not pass the worker's checks, at once and for good; nothing touches the filesystem. */
  async reject(rejected: RejectedJob): Promise<Settled> {
    const { job, token, reason, jobId } = rejected;
    const log = withFields(this.options.log, { jobId: jobId ?? job.id });
    log.warn({ reason }, 'invalid job; failing it');
    const movedTo = await this.move(log, 'failed', () => job.moveToFailed(new UnrecoverableError(reason), token, false));
    if (!jobId) return { status: null, movedTo };
    // Best effort: the id is sound, so its status may say what went wrong.
    const current = await this.options.statuses.read(jobId).catch(() => null);
    const model = current?.model ?? rejected.model;
    if (!model) return { status: null, movedTo };
    const life: JobLife = current ? lifeOf(current) : { model };
    const written = await this.write(jobId, jobStatus.failed(life, { message: reason }), { from: ENDED_FROM, redisIfNoStorage: true }, log);
    return { status: 'written' in written && written.written ? 'failed' : null, movedTo };
  }

  /** BullMQ gave up on a job whose workers kept dying: its status says so. */
  async failStalled(jobId: string, reason: string): Promise<void> {
    const log = withFields(this.options.log, { jobId });
    const current = await this.options.statuses.read(jobId).catch(() => null);
    await this.forgetHandBacks(jobId);
    if (!current || isFinished(current)) return;
    const record = jobStatus.failed(lifeOf(current), { message: `The job was interrupted too often: ${reason}` });
    await this.write(jobId, record, { from: ENDED_FROM, redisIfNoStorage: true }, log);
  }

  /** Counts a hand-back of `jobId`: the count, this one included. */
  async countHandBack(jobId: string): Promise<number> {
    return this.options.redis.hincrby(this.options.keys.handBacks, jobId, 1);
  }

  private async done(held: HeldJob, log: Logger): Promise<Settled> {
    const { jobId, model } = held.data;
    const written = await this.write(jobId, jobStatus.done(this.life(held)), { from: ENDED_FROM, ...known(held) }, log);
    if ('error' in written) return this.countedHandBack(held, `could not record the job as done: ${written.error.message}`, log);
    if (!written.written) {
      if (written.current && isFinished(written.current)) return this.mirror(held, written.current, log);
      return this.countedHandBack(held, `could not record the job as done: ${written.reason}`, log);
    }
    this.options.metrics.jobFinished(this.options.sheepId, model, 'done');
    log.info('job done');
    // From here the job is done whatever happens: a lost completion brings it back, and its status stops a rerun.
    const movedTo = await this.move(log, 'completed', () => held.job.moveToCompleted({ done: true }, held.token, false));
    await this.forgetHandBacks(jobId);
    return { status: 'done', movedTo };
  }

  /** `final`: the hand-backs are spent, so the job fails in BullMQ even if its status cannot be written. */
  /** Cancelled by a client (the gateway recorded it): the BullMQ job fails, nothing of it is kept. */
  private async cancelled(held: HeldJob, log: Logger): Promise<Settled> {
    const { jobId, model } = held.data;
    const current = await this.options.statuses.read(jobId).catch(() => null);
    let status: JobState | null = null;
    if (current && !isFinished(current)) {
      const written = await this.write(jobId, jobStatus.cancelled(lifeOf(current)), { from: ENDED_FROM, redisIfNoStorage: true }, log);
      if ('written' in written && written.written) status = 'cancelled';
    }
    this.options.metrics.jobFinished(this.options.sheepId, model, 'cancelled');
    log.info('job cancelled');
    const movedTo = await this.move(log, 'failed', () => held.job.moveToFailed(new UnrecoverableError('Cancelled'), held.token, false));
    await this.forgetHandBacks(jobId);
    return { status, movedTo };
  }

  private async failed(held: HeldJob, details: ErrorDetails, log: Logger, how: { dataGone?: boolean; final?: boolean; timedOut?: boolean }): Promise<Settled> {
    const { jobId, model } = held.data;
    log.warn({ error: details.message }, 'job failed');
    const record = jobStatus.failed(this.life(held), details);
    const written = await this.write(jobId, record, { from: ENDED_FROM, redisIfNoStorage: how.dataGone, ...known(held) }, log);
    if ('error' in written && !how.final) {
      return this.countedHandBack(held, `could not record the failure (${details.message}): ${written.error.message}`, log);
    }
    if ('written' in written && !written.written && written.current && isFinished(written.current)) {
      return this.mirror(held, written.current, log);
    }
    const recorded = 'written' in written && written.written;
    if (recorded) this.options.metrics.jobFinished(this.options.sheepId, model, how.timedOut ? 'timed_out' : 'failed');
    const movedTo = await this.move(log, 'failed', () => held.job.moveToFailed(new UnrecoverableError(details.message), held.token, false));
    await this.forgetHandBacks(jobId);
    return { status: recorded ? 'failed' : null, movedTo };
  }

  /** The job finished before: BullMQ is brought in line with its status, nothing runs again. */
  private async mirror(held: HeldJob, status: JobStatus, log: Logger): Promise<Settled> {
    log.warn({ status: status.status }, 'the job had already finished; not running it again');
    const movedTo =
      status.status === 'done'
        ? await this.move(log, 'completed', () => held.job.moveToCompleted({ done: true }, held.token, false))
        : await this.move(log, 'failed', () => {
            const message = status.error_details?.message ?? `The job was ${status.status}`;
            return held.job.moveToFailed(new UnrecoverableError(message), held.token, false);
          });
    await this.forgetHandBacks(held.data.jobId);
    return { status: null, movedTo };
  }

  /** Shutdown: the job goes back untouched and does not count. */
  private async handBack(held: HeldJob, log: Logger): Promise<Settled> {
    const status = await this.requeue(held, log);
    const movedTo = await this.move(log, 'wait', () => held.job.moveToWait(held.token));
    log.info('job handed back');
    return { status, movedTo };
  }

  /** Back to the queue after a wait that doubles each time; past `maxHandBacks` the job fails. */
  private async countedHandBack(held: HeldJob, reason: string, log: Logger, atOnce = false): Promise<Settled> {
    const { maxHandBacks, handBackDelayMs } = this.options.worker;
    let count: number;
    try {
      count = await this.countHandBack(held.data.jobId);
    } catch (error) {
      // Redis is away: the move would fail too. BullMQ's stalled check bounds this path.
      log.error({ err: error, reason }, 'could not hand the job back; it returns when its lock lapses');
      return { status: null, movedTo: null };
    }
    if (count > maxHandBacks) {
      return this.failed(held, { message: `${reason} (handed back ${maxHandBacks} times)` }, log, { final: true });
    }
    const delayMs = atOnce ? 0 : Math.min(handBackDelayMs * 2 ** (count - 1), MAX_HAND_BACK_DELAY_MS);
    const status = await this.requeue(held, log);
    const movedTo = atOnce
      ? await this.move(log, 'wait', () => held.job.moveToWait(held.token))
      : await this.move(log, 'delayed', () => held.job.moveToDelayed(Date.now() + delayMs, held.token));
    log.warn({ reason, handBacks: count, delayMs }, 'job handed back');
    return { status, movedTo, handBacks: count, delayMs };
  }

  /** `processing` back to `queued`; a job that never got that far is still queued. */
  private async requeue(held: HeldJob, log: Logger): Promise<JobState | null> {
    const { jobId, model, enqueuedAt } = held.data;
    const written = await this.options.statuses
      .transition(jobId, jobStatus.queued({ model, enqueuedAt }), { from: ['processing'] })
      .catch((error: unknown) => ({ error: error as Error }));
    if ('error' in written) log.warn({ err: written.error }, 'could not record the job as queued');
    else if (written.written) return 'queued';
    else if (written.current && isFinished(written.current)) log.warn({ reason: written.reason }, 'queued not recorded');
    return null;
  }

  /** A transition whose error is a value; a refusal is logged and never retried as it is. */
  private async write(jobId: string, status: JobStatus, options: TransitionOptions, log: Logger): Promise<Written> {
    try {
      const result = await this.options.statuses.transition(jobId, status, options);
      if (!result.written) log.warn({ reason: result.reason, to: status.status }, 'status not recorded');
      return result;
    } catch (error) {
      log.warn({ err: error, to: status.status }, 'could not write the status');
      return { error: error as Error };
    }
  }

  private async move(log: Logger, to: NonNullable<Settled['movedTo']>, call: () => Promise<unknown>): Promise<Settled['movedTo']> {
    try {
      await call();
      return to;
    } catch (error) {
      log.warn({ err: error, to }, 'could not move the BullMQ job; it returns when its lock lapses');
      return null;
    }
  }

  private async forgetHandBacks(jobId: string): Promise<void> {
    await this.options.redis.hdel(this.options.keys.handBacks, jobId).catch(() => undefined);
  }

  private life(held: HeldJob): JobLife {
    return { model: held.data.model, enqueuedAt: held.data.enqueuedAt, startedAt: held.startedAt ?? null, sheepId: this.options.sheepId };
  }
}

/** What this worker wrote last for the job, when it wrote anything: the final write skips its read. */
function known(held: HeldJob): Pick<TransitionOptions, 'known'> {
  return held.lastRecord ? { known: held.lastRecord } : {};
}
