import { Inject, Injectable, Logger, type BeforeApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { ShepherdConfig } from '@shepherd/config';
import { describeZodError, WEBHOOK_QUEUE, WebhookDeliverySchema } from '@shepherd/contracts';
import { createRedis, RedisKeys, StatusStore, WebhookCounts, WebhookOutbox, type RedisClient } from '@shepherd/queue';
import { CONFIG, REDIS } from '../core/tokens';
import { postOnce, signedHeaders, webhookKey } from './webhook-sender';
import { checkTarget, systemLookup, type HostLookup } from './webhook-target';

/**
 * The gateway's part of webhooks: the outbox on its own status writes
 * (cancels, the reconciler, queue timeouts; the workers attach theirs), and
 * the BullMQ worker that sends what every outbox queued. Each try checks the
 * host again and connects to the address it checked; 2xx is delivered,
 * anything else is thrown for BullMQ to retry with backoff, and a refused
 * host fails at once (UnrecoverableError). Without `webhooks.secret` no
 * delivery worker runs (the submit refuses webhooks then).
 */
@Injectable()
export class WebhookDeliveries implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('Webhooks');
  private readonly outbox: WebhookOutbox;
  private readonly counts: WebhookCounts;
  /** Aborted at shutdown: tries in flight fail and are retried later (same webhook-id). */
  private readonly closing = new AbortController();
  private worker?: Worker;
  private connection?: RedisClient;
  private readonly lookup: HostLookup = systemLookup;

  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    @Inject(REDIS) redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly statuses: StatusStore,
  ) {
    this.outbox = new WebhookOutbox(redis, keys, {
      retryForMs: config.webhooks.retryForMs,
      onError: (error, delivery) => this.logger.warn({ jobId: delivery.jobId, event: delivery.eventType, err: error }, 'could not queue a webhook delivery'),
    });
    this.counts = new WebhookCounts(redis, keys);
  }

  onModuleInit(): void {
    this.outbox.attach(this.statuses);
    const secret = this.config.webhooks.secret;
    if (!secret) return;
    const key = webhookKey(secret);
    // A blocking connection of its own, as BullMQ workers need (maxRetriesPerRequest: null).
    this.connection = createRedis(this.config.redis, 'worker');
    this.worker = new Worker(this.keys.bullName(WEBHOOK_QUEUE), (job) => this.deliver(job, key), {
      connection: this.connection,
      prefix: this.keys.prefix,
      concurrency: this.config.webhooks.concurrency,
    });
    this.worker.on('error', (error) => this.logger.debug({ err: error }, 'webhook worker error'));
    this.worker.on('failed', (job, error) => {
      if (job && !(error instanceof UnrecoverableError) && job.attemptsMade < (job.opts.attempts ?? 1)) return;
      this.logger.warn({ jobId: job?.data?.jobId, webhookId: job?.id, reason: error.message }, 'webhook delivery given up');
    });
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.closing.abort();
    await this.worker?.close().catch(() => undefined);
    await this.outbox.close();
    await this.connection?.quit().catch(() => this.connection?.disconnect());
  }

  /** One try of one delivery; throws to have BullMQ retry it. */
  private async deliver(job: Job, key: Buffer): Promise<void> {
    const parsed = WebhookDeliverySchema.safeParse(job.data);
    if (!parsed.success) {
      this.counts.count('failed');
      throw new UnrecoverableError(`malformed webhook delivery: ${describeZodError(parsed.error)}`);
    }
    const delivery = parsed.data;
    const target = await checkTarget(delivery.url, this.config.webhooks.allowHosts, this.lookup);
    if (!target.ok && !target.temporary) {
      this.counts.count('refused');
      throw new UnrecoverableError(`webhook refused: ${target.reason}`);
    }
    try {
      if (!target.ok) throw new Error(target.reason);
      const body = JSON.stringify(delivery.status);
      const code = await postOnce({
        url: target.url,
        address: target.address,
        body,
        headers: { ...signedHeaders(key, delivery.messageId, body), 'x-shepherd-event': delivery.eventType },
        timeoutMs: this.config.webhooks.timeoutMs,
        signal: this.closing.signal,
      });
      if (code < 200 || code >= 300) throw new Error(`the receiver answered ${code}`);
    } catch (error) {
      // attemptsMade counts the tries that failed before this one.
      this.counts.count(job.attemptsMade + 1 < (job.opts.attempts ?? 1) ? 'retried' : 'failed');
      throw error;
    }
    this.counts.count('delivered');
  }
}
