/**
 * Redis keys Shepherd writes besides BullMQ's own, all under one prefix
 * (BullMQ's queues use the same prefix; queue names start with `model.` or
 * `sheep.`, so they never collide with these).
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  status(jobId: string): string {
    return `${this.prefix}:status:${jobId}`;
  }

  /** Pub/sub channel announcing every status change: `{"jobId", "status"}`. */
  get statusChannel(): string {
    return `${this.prefix}:status-events`;
  }

  /** Pub/sub channel where each new job names its queue, so idle sheep wake at once. */
  get workChannel(): string {
    return `${this.prefix}:work`;
  }

  sheep(sheepId: string): string {
    return `${this.prefix}:sheep:${sheepId}`;
  }

  get modelQueues(): string {
    return `${this.prefix}:model-queues`;
  }
}
