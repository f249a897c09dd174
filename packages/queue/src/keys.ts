export interface RedisKeysOptions {
  /** Redis Cluster (config `redis.cluster`): BullMQ queue names get a hash tag. Default false. */
  cluster?: boolean;
}

/**
 * Redis keys Shepherd writes besides BullMQ's own, all under one prefix
 * (BullMQ's queues use the same prefix; queue names start with `model.` or
 * `sheep.`, so they never collide with these).
 *
 * Every key of one job carries the job id as its hash tag (`{id}`: job ids
 * cannot contain braces), so a script may touch them together on a Redis
 * Cluster. Keys shared by all jobs (indexes, the pending claims) are
 * written by separate commands, never in a script with a job's keys.
 */
export class RedisKeys {
  readonly cluster: boolean;

  constructor(
    readonly prefix: string,
    options: RedisKeysOptions = {},
  ) {
    this.cluster = options.cluster ?? false;
  }

  /**
   * BullMQ's name of a queue: on a cluster the logical name in braces, so
   * all of one queue's keys share a slot and the queues spread over the
   * slots; the logical name everywhere else (metrics, the model-queues set,
   * /status). Changing it strands the jobs waiting under the old name.
   */
  bullName(queue: string): string {
    return this.cluster ? `{${queue}}` : queue;
  }

  status(jobId: string): string {
    return `${this.prefix}:status:{${jobId}}`;
  }

  /** Stream of a job's status changes and progress, what SSE clients replay from `Last-Event-ID`. */
  events(jobId: string): string {
    return `${this.prefix}:events:{${jobId}}`;
  }

  /** Pub/sub channel announcing every status change and progress: `{"jobId", "id", "type", "status"}`. */
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

  /** Lease of a submit in progress; it lapses when the gateway that holds it dies. */
  submitLease(jobId: string): string {
    return `${this.prefix}:submit:{${jobId}}`;
  }

  /** Sorted set of claimed job ids not yet committed, by claim time: what the reconciler looks at. */
  get pendingSubmits(): string {
    return `${this.prefix}:submits`;
  }

  /** Hash: job id of an open claim -> the queue it goes to. */
  get pendingQueues(): string {
    return `${this.prefix}:submit-queues`;
  }

  /** Hash: job id -> `queue|token` of the jobs a sheep holds, so its next worker returns them at once. */
  sheepJobs(sheepId: string): string {
    return `${this.prefix}:sheep-jobs:${sheepId}`;
  }

  /** Hash: job id -> times it was handed back to its queue; bounds the hand-backs. */
  get handBacks(): string {
    return `${this.prefix}:hand-backs`;
  }

  /** Sorted set: the jobs of one API token still waiting (accepted or queued), by submit time. */
  waitingJobs(owner: string): string {
    return `${this.prefix}:waiting:${owner}`;
  }

  /** Counter of uploads to a job still streaming; a start waits for none. */
  uploads(jobId: string): string {
    return `${this.prefix}:uploads:{${jobId}}`;
  }

  /** Sorted set: every job, by submit time (ms): the listing's index. */
  get jobIndex(): string {
    return `${this.prefix}:jobs`;
  }

  /** Sorted set: finished jobs in one final state, by finish time (ms): what retention sweeps. */
  finishedIndex(state: string): string {
    return `${this.prefix}:finished:${state}`;
  }

  /** Sorted set: `queue|jobId` of jobs with a queue timeout, by the time they must have started (ms). */
  get startDeadlines(): string {
    return `${this.prefix}:start-deadlines`;
  }

  /** Pub/sub channel: a job id to cancel; the worker holding it stops its runner. */
  get cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }

  /** Hash: `sheep|model|status` -> finished jobs. */
  get finishedMetrics(): string {
    return `${this.prefix}:metrics:finished`;
  }

  /** Hash: sheep -> runner starts. */
  get modelLoadMetrics(): string {
    return `${this.prefix}:metrics:model-loads`;
  }

  /** Hash: `stage|sheep|bucket`, `stage|sheep|sum`, `stage|sheep|count`. */
  get stageMetrics(): string {
    return `${this.prefix}:metrics:stages`;
  }
}
