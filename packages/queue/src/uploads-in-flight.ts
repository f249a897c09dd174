import type { RedisKeys } from './keys';
import { viaRedis, type RedisClient } from './redis';

/** Renewed while an upload streams; an upload whose gateway died stops counting after this. */
export const UPLOAD_TTL_SECONDS = 30;

/**
 * Uploads to each job still streaming, across gateways: a start that finds
 * one refuses (the file would land after the job ran), and an upload begins
 * by counting itself, then checks the job was not started, so one of the
 * two always sees the other.
 */
export class UploadsInFlight {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  async begin(jobId: string): Promise<void> {
    const key = this.keys.uploads(jobId);
    await viaRedis(() => this.redis.multi().incr(key).expire(key, UPLOAD_TTL_SECONDS).exec());
  }

  /** Called every few seconds while the upload streams. */
  async renew(jobId: string): Promise<void> {
    await viaRedis(() => this.redis.expire(this.keys.uploads(jobId), UPLOAD_TTL_SECONDS));
  }

  /** The key stays at 0 until it expires: deleting it could drop an upload that just began. */
  async end(jobId: string): Promise<void> {
    await viaRedis(() => this.redis.decr(this.keys.uploads(jobId)));
  }

  async any(jobId: string): Promise<boolean> {
    const count = await viaRedis(() => this.redis.get(this.keys.uploads(jobId)));
    return Number(count ?? 0) > 0;
  }
}
