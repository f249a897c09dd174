import type { Redis } from 'ioredis';
import { JobStatusSchema, type JobStatus } from '@shepherd/contracts';
import type { JobStorage } from '@shepherd/storage';
import type { RedisKeys } from './keys';
import { viaRedis } from './redis';

/** How long Redis keeps a status; the record in storage is kept for good. */
export const STATUS_CACHE_SECONDS = 7 * 24 * 3600;

/**
 * Job status: durable in storage (`job_status.json`), cached in Redis for
 * fast reads, each change announced on a pub/sub channel for waiters.
 * Reads fall back to storage, so a Redis flush loses nothing.
 */
export class StatusStore {
  constructor(
    private readonly redis: Redis,
    private readonly storage: JobStorage,
    private readonly keys: RedisKeys,
  ) {}

  async read(jobId: string): Promise<JobStatus | null> {
    const cached = await viaRedis(() => this.redis.get(this.keys.status(jobId)));
    if (cached !== null) return JobStatusSchema.parse(JSON.parse(cached));
    const stored = await this.storage.readStatus(jobId);
    if (stored) await this.cache(jobId, stored);
    return stored;
  }

  /** Writes storage first, so Redis never shows a status storage lacks. */
  async write(jobId: string, status: JobStatus): Promise<void> {
    await this.storage.writeStatus(jobId, status);
    const json = JSON.stringify(status);
    // Cache and announce in one round trip.
    await viaRedis(() =>
      this.redis
        .multi()
        .set(this.keys.status(jobId), json, 'EX', STATUS_CACHE_SECONDS)
        .publish(this.keys.statusChannel, `{"jobId":${JSON.stringify(jobId)},"status":${json}}`)
        .exec(),
    );
  }

  /**
   * Takes the job id for a new job: records `status` in Redis only if no
   * status is there. False when another submit holds or held the id.
   */
  async claim(jobId: string, status: JobStatus): Promise<boolean> {
    const set = await viaRedis(() =>
      this.redis.set(this.keys.status(jobId), JSON.stringify(status), 'EX', STATUS_CACHE_SECONDS, 'NX'),
    );
    return set === 'OK';
  }

  /** Drops the cached status (a failed submit gives its claim back). */
  async forget(jobId: string): Promise<void> {
    await viaRedis(() => this.redis.del(this.keys.status(jobId)));
  }

  private async cache(jobId: string, status: JobStatus): Promise<void> {
    await viaRedis(() => this.redis.set(this.keys.status(jobId), JSON.stringify(status), 'EX', STATUS_CACHE_SECONDS));
  }
}
