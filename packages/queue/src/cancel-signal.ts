import type { RedisKeys } from './keys';
import { viaRedis, type RedisClient } from './redis';

/**
 * Cancels cross processes (and machines) on a pub/sub channel: the gateway
 * records `cancelled`, then names the job here; the worker holding it stops
 * its runner. A worker that missed the message still finds the status
 * before it runs the job, and its final write is refused.
 */
export class CancelSignal {
  private readonly listeners = new Set<(jobId: string) => void>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  /** Subscribes `subscriber` (a connection in subscriber mode) and calls the listeners on each cancel. */
  async listen(subscriber: RedisClient): Promise<void> {
    subscriber.on('message', (channel: string, jobId: string) => {
      if (channel !== this.keys.cancelChannel) return;
      for (const listener of this.listeners) listener(jobId);
    });
    await subscriber.subscribe(this.keys.cancelChannel);
  }

  onCancel(listener: (jobId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async send(jobId: string): Promise<void> {
    await viaRedis(() => this.redis.publish(this.keys.cancelChannel, jobId));
  }
}
