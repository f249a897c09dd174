import type { RedisKeys } from './keys';
import type { RedisClient } from './redis';

/**
 * Wakes an idle sheep when a job is added to any queue. Sheep also poll at
 * an interval, so a wake-up lost while Redis reconnects delays a job by at
 * most that interval.
 */
export class WorkSignal {
  private waiters = new Set<() => void>();

  constructor(
    private readonly subscriber: RedisClient,
    private readonly keys: RedisKeys,
  ) {
    subscriber.on('message', (channel: string) => {
      if (channel === keys.workChannel) this.wakeAll();
    });
  }

  async start(): Promise<void> {
    await this.subscriber.subscribe(this.keys.workChannel);
  }

  /** Resolves on the next wake-up, or after `timeoutMs`, or when `signal` aborts. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.add(done);
      signal?.addEventListener('abort', done);
    });
  }

  wakeAll(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
