import type { RedisKeys } from './keys';
import type { RedisClient } from './redis';

/**
 * Wakes an idle sheep when a job is added to any queue. Sheep also poll at
 * an interval, so a wake-up lost while Redis reconnects delays a job by at
 * most that interval.
 */
export class WorkSignal {
  private waiters = new Set<() => void>();
  /** When each queue was last named by a wake-up (the gateway publishes the queue it added to). */
  private readonly lastWake = new Map<string, number>();

  constructor(
    private readonly subscriber: RedisClient,
    private readonly keys: RedisKeys,
  ) {
    subscriber.on('message', (channel: string, message: string) => {
      if (channel !== keys.workChannel) return;
      this.lastWake.set(message, Date.now());
      this.wakeAll();
    });
  }

  /** When `queue` was last named by a wake-up (0: never, as far as this process heard). */
  wokenAt(queue: string): number {
    return this.lastWake.get(queue) ?? 0;
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
