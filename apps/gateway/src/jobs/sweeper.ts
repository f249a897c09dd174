import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import type { ShepherdConfig } from '@shepherd/config';
import { jobStatus, lifeOf, notStartedError, type JobState } from '@shepherd/contracts';
import { JobIndex, JobQueues, StartDeadlines, StatusStore } from '@shepherd/queue';
import { CONFIG } from '../core/tokens';
import { JobControl } from './job-control';

/** Jobs handled per pass; the next pass goes on. */
const BATCH = 200;

/**
 * Two clocks over the jobs: a job not started by its queue_timeout fails
 * (even with no sheep alive to notice), and finished jobs past their
 * retention are removed (storage, Redis, queue entries). Every gateway runs
 * one; each step is idempotent, so several agree.
 */
@Injectable()
export class Sweeper implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('Sweeper');
  private readonly timers: NodeJS.Timeout[] = [];
  private running = new Set<Promise<void>>();

  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    private readonly statuses: StatusStore,
    private readonly queues: JobQueues,
    private readonly index: JobIndex,
    private readonly deadlines: StartDeadlines,
    private readonly control: JobControl,
  ) {}

  onApplicationBootstrap(): void {
    this.every(this.config.gateway.reconcileIntervalMs, () => this.failLateStarts());
    const { doneMs, failedMs, cancelledMs, intervalMs } = this.config.retention;
    if (doneMs !== undefined || failedMs !== undefined || cancelledMs !== undefined) this.every(intervalMs, () => this.expire());
  }

  async onModuleDestroy(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    await Promise.all(this.running);
  }

  private every(ms: number, pass: () => Promise<void>): void {
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      const run = pass()
        .catch((error: unknown) => this.logger.debug({ err: error }, 'sweep failed; the next one retries'))
        .finally(() => {
          busy = false;
          this.running.delete(run);
        });
      this.running.add(run);
    }, ms);
    timer.unref();
    this.timers.push(timer);
  }

  /** Jobs whose queue_timeout passed: off their queue and failed, unless a worker took them in time. */
  async failLateStarts(): Promise<void> {
    for (const due of await this.deadlines.due(BATCH)) {
      const status = await this.statuses.read(due.jobId).catch(() => null);
      const job = status?.status === 'queued' ? await this.queues.find(due.queue, due.jobId) : null;
      if (status && job && (await this.queues.removeWaiting(due.queue, due.jobId))) {
        await this.statuses.transition(due.jobId, jobStatus.failed(lifeOf(status), notStartedError(job.data)), { from: ['queued'] });
        this.logger.log({ jobId: due.jobId }, 'failed a job that waited past its queue timeout');
      }
      await this.deadlines.done(due.entry);
    }
  }

  /** Finished jobs older than their state's retention. */
  async expire(): Promise<void> {
    const { doneMs, failedMs, cancelledMs } = this.config.retention;
    const kept: Array<[JobState, number | undefined]> = [['done', doneMs], ['failed', failedMs], ['cancelled', cancelledMs]];
    for (const [state, ms] of kept) {
      if (ms === undefined) continue;
      for (const jobId of await this.index.finishedBefore(state, Date.now() - ms, BATCH)) {
        const status = await this.statuses.read(jobId).catch(() => null);
        if (status) await this.control.remove(jobId, status);
        else await this.statuses.drop(jobId);
        this.logger.debug({ jobId, state }, 'removed a job past its retention');
      }
    }
  }
}
