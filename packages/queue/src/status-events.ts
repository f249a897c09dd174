import { StatusEventSchema, type JobStatus, type StatusEvent } from '@shepherd/contracts';
import type { RedisKeys } from './keys';
import type { RedisClient } from './redis';

type Listener = (status: JobStatus, event: StatusEvent) => void;

/**
 * One pub/sub subscription per process, fanned out to any number of
 * waiters by job id, so a thousand `wait_ready` calls cost one Redis
 * connection and no polling.
 */
export class StatusEvents {
  private readonly listeners = new Map<string, Set<Listener>>();
  private subscribed?: Promise<unknown>;

  constructor(
    private readonly subscriber: RedisClient,
    private readonly keys: RedisKeys,
  ) {
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === keys.statusChannel) this.dispatch(message);
    });
  }

  /** Subscribes once; resolves when Redis confirmed (or rejects while it is away). */
  start(): Promise<unknown> {
    this.subscribed ??= this.subscriber.subscribe(this.keys.statusChannel).catch((error: unknown) => {
      this.subscribed = undefined;
      throw error;
    });
    return this.subscribed;
  }

  /** Calls `listener` on every status change of `jobId` until the returned function is called. */
  listen(jobId: string, listener: Listener): () => void {
    let set = this.listeners.get(jobId);
    if (!set) this.listeners.set(jobId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(jobId);
    };
  }

  get waiting(): number {
    let count = 0;
    for (const set of this.listeners.values()) count += set.size;
    return count;
  }

  private dispatch(message: string): void {
    // Every change of every job comes by: one nobody here waits for is dropped before any parsing.
    const jobId = jobIdOf(message);
    if (jobId !== undefined && !this.listeners.has(jobId)) return;
    let event: StatusEvent;
    try {
      event = StatusEventSchema.parse(JSON.parse(message));
    } catch {
      return; // not ours or malformed: nobody can act on it
    }
    for (const listener of this.listeners.get(event.jobId) ?? []) listener(event.status, event);
  }
}

const PREFIX = '{"jobId":';

/**
 * The job id at the head of a message as the status scripts write it
 * (`{"jobId":<json string>,"id":...`); undefined for any other shape. A
 * quote inside the id is escaped, so the first `,"id":` ends it.
 */
function jobIdOf(message: string): string | undefined {
  if (!message.startsWith(PREFIX)) return undefined;
  const end = message.indexOf(',"id":', PREFIX.length);
  if (end < 0) return undefined;
  try {
    const id: unknown = JSON.parse(message.slice(PREFIX.length, end));
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}
