import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import type { ShepherdConfig } from '@shepherd/config';
import { jobStatus } from '@shepherd/contracts';
import { JobQueues, StatusStore } from '@shepherd/queue';
import type { JobStorage } from '@shepherd/storage';
import { CONFIG, STORAGE } from '../core/tokens';

/**
 * Settles submits whose gateway died between the claim and the answer:
 * a claim whose lease lapsed and that nobody retried. If the job reached
 * its queue, its status becomes `queued`; if not, the claim is released
 * (the id is free again, uploaded inputs stay). Every gateway runs one;
 * each step is atomic in Redis, so several agree.
 */
@Injectable()
export class Reconciler implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('Reconciler');
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    @Inject(STORAGE) private readonly storage: JobStorage,
    private readonly statuses: StatusStore,
    private readonly queues: JobQueues,
  ) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => {
      this.running ??= this.pass()
        .catch((error: unknown) => this.logger.debug({ err: error }, 'reconcile pass failed; next pass retries'))
        .finally(() => (this.running = undefined));
    }, this.config.gateway.reconcileIntervalMs);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One look at the open claims older than a lease. */
  async pass(): Promise<void> {
    const claims = await this.statuses.openClaims(this.config.gateway.submitLeaseMs);
    for (const claim of claims) {
      if (claim.leased) continue; // a submit (or its retry) is still at work
      await this.settle(claim.jobId, claim.queue).catch((error: unknown) => {
        this.logger.warn({ jobId: claim.jobId, err: error }, 'could not settle an abandoned submit; retrying next pass');
      });
    }
  }

  private async settle(jobId: string, queue: string | null): Promise<void> {
    const job = queue ? await this.queues.find(queue, jobId) : null;
    if (job) {
      const queued = jobStatus.queued({ model: job.data.model, enqueuedAt: job.data.enqueuedAt });
      const result = await this.statuses.commitClaim(jobId, queued);
      const status = result.written ? 'queued' : result.current?.status;
      this.logger.log({ jobId, status }, 'settled an abandoned submit: the job is on its queue');
      return;
    }
    const stored = await this.storage.readStatus(jobId).catch(() => null);
    // Only the claim's own record goes; a record past `queued` is a job that exists.
    if (stored && stored.status !== 'queued' && stored.status !== 'accepted') {
      await this.statuses.cache(jobId, stored);
      await this.statuses.releaseClaim(jobId, '');
      return;
    }
    if (stored) await this.storage.deleteStatus(jobId);
    if (!(await this.statuses.releaseClaim(jobId, ''))) return; // a retry took it over meanwhile
    this.logger.log({ jobId }, 'released an abandoned submit: the job never reached its queue; its id is free again');
  }
}
