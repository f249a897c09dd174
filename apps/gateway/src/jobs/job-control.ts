import { Inject, Injectable, Logger } from '@nestjs/common';
import type { ShepherdConfig } from '@shepherd/config';
import { isFinished, jobStatus, JobStatusSchema, lifeOf, modelQueueName, publicStatus, sheepQueueName, type JobState, type JobStatus } from '@shepherd/contracts';
import { InvalidCursorError, JobIndex, JobQueues, RedisKeys, StatusStore, viaRedis, type RedisClient } from '@shepherd/queue';
import type { JobStorage } from '@shepherd/storage';
import { badRequest, conflict, unknownJob } from '../errors/api-errors';
import { mayAccess, type Principal } from '../auth/principal';
import { CONFIG, REDIS, STORAGE } from '../core/tokens';

export interface ListQuery {
  status?: JobState;
  model?: string;
  sheep?: string;
  limit: number;
  cursor: string | null;
}

export interface ListPage {
  jobs: Array<JobStatus & { job_id: string }>;
  /** Pass back as `cursor` for the next page; null on the last. */
  next_cursor: string | null;
}

/** At most this many index entries are read to fill one filtered page; the cursor goes on from there. */
const SCAN_PER_PAGE = 2000;

/** Cancel, delete and list: what a client does to jobs after submitting them. */
@Injectable()
export class JobControl {
  private readonly logger = new Logger('Jobs');

  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    @Inject(STORAGE) private readonly storage: JobStorage,
    @Inject(REDIS) private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly statuses: StatusStore,
    private readonly queues: JobQueues,
    private readonly index: JobIndex,
  ) {}

  /**
   * Cancels a job that has not finished: `cancelled` is recorded first (so
   * a race with the job's end leaves one final state: whichever write came
   * first), then the job leaves its queue, or the worker holding it is told
   * to stop its runner.
   */
  async cancel(jobId: string, principal: Principal): Promise<void> {
    const current = await this.read(jobId, principal);
    if (isFinished(current)) throw conflict(`Job \`${jobId}\` already finished (${current.status}): nothing to cancel`);
    const result = await this.statuses.transition(jobId, jobStatus.cancelled(lifeOf(current), 'Cancelled by request'), {
      from: ['accepted', 'queued', 'processing'],
      redisIfNoStorage: true,
    });
    if (!result.written) {
      throw conflict(`Job \`${jobId}\` already finished (${result.current?.status ?? 'gone'}): nothing to cancel`);
    }
    for (const queue of this.queuesOf(current)) {
      if (await this.queues.removeWaiting(queue, jobId)) {
        this.logger.log({ jobId, queue }, 'cancelled a queued job: it left its queue');
        return;
      }
    }
    // A worker holds it (or will take it and find it cancelled): tell the workers.
    await viaRedis(() => this.redis.publish(this.keys.cancelChannel, jobId));
    this.logger.log({ jobId }, 'cancelled a job in progress: its worker stops the runner');
  }

  /** Deletes a finished job's data at once: storage, status, indexes, queue entry. */
  async delete(jobId: string, principal: Principal): Promise<void> {
    const current = await this.read(jobId, principal);
    if (!isFinished(current)) throw conflict(`Job \`${jobId}\` is ${current.status}: cancel it or wait for it to finish before deleting it`);
    await this.remove(jobId, current);
  }

  /** Removes every trace of a finished job (DELETE and retention). */
  async remove(jobId: string, status: JobStatus): Promise<void> {
    await this.storage.deleteJob(jobId);
    for (const queue of this.queuesOf(status)) await this.queues.removeFinished(queue, jobId);
    await this.statuses.drop(jobId);
  }

  async list(query: ListQuery, principal: Principal): Promise<ListPage> {
    const jobs: ListPage['jobs'] = [];
    let cursor = query.cursor;
    let scanned = 0;
    try {
      while (jobs.length < query.limit && scanned < SCAN_PER_PAGE) {
        const page = await this.index.page(Math.min(500, Math.max(query.limit - jobs.length, 50)), cursor);
        scanned += page.jobIds.length;
        // One GET per job: on a cluster their keys lie in other slots (autopipelined per node).
        const records = await viaRedis(() => Promise.all(page.jobIds.map((id) => this.redis.get(this.keys.status(id)))));
        let taken = 0;
        for (const [i, jobId] of page.jobIds.entries()) {
          taken = i + 1;
          // Not cached (an old job): its durable record, if it still exists.
          const status = parseStatus(records[i] ?? null) ?? (await this.statuses.read(jobId).catch(() => null));
          if (status && this.matches(status, query, principal)) jobs.push({ job_id: jobId, ...publicStatus(status, this.config.debug) });
          if (jobs.length === query.limit) break;
        }
        if (taken < page.jobIds.length) {
          // The page filled mid-batch: the next one starts right after the last job taken.
          cursor = (await this.index.page(taken, cursor)).cursor;
          break;
        }
        cursor = page.cursor;
        if (!cursor) break;
      }
    } catch (error) {
      if (error instanceof InvalidCursorError) throw badRequest(error.message);
      throw error;
    }
    return { jobs, next_cursor: cursor };
  }

  private matches(status: JobStatus, query: ListQuery, principal: Principal): boolean {
    if (!mayAccess(principal, status.submitted_by)) return false;
    if (query.status && status.status !== query.status) return false;
    if (query.model && `${status.model.name}:${status.model.version}` !== query.model && status.model.name !== query.model) return false;
    if (query.sheep && status.sheep_id !== query.sheep) return false;
    return true;
  }

  private async read(jobId: string, principal: Principal): Promise<JobStatus> {
    const status = await this.statuses.read(jobId);
    if (!status || !mayAccess(principal, status.submitted_by)) throw unknownJob(jobId);
    return status;
  }

  /** The queues a job may sit on: its model's, and the sheep queues (a pinned job). */
  private queuesOf(status: JobStatus): string[] {
    return [modelQueueName(status.model), ...Object.keys(this.config.sheep).map(sheepQueueName)];
  }
}

function parseStatus(record: string | null): JobStatus | null {
  if (record === null) return null;
  try {
    return JobStatusSchema.parse(JSON.parse(record));
  } catch {
    return null;
  }
}
