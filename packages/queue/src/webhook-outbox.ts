import { Queue } from 'bullmq';
import { isFinalState, publicStatus, WEBHOOK_QUEUE, type WebhookDelivery, type WebhookEvent } from '@shepherd/contracts';
import type { RedisKeys } from './keys';
import type { RedisClient } from './redis';
import type { StatusChange, StatusStore } from './status-store';

// Webhooks, the producer side. Every process that writes statuses (the
// gateway, each worker) attaches an outbox to its StatusStore; on a change
// of a job that has a webhook, the outbox puts one delivery on the
// `webhooks` BullMQ queue, which the gateway's delivery worker sends
// (signed, retried with backoff). Adding is fire-and-forget: a delivery
// never blocks or fails a status write, and a lost add is only logged.
//
// Delivery ids are BullMQ job ids, and the `webhook-id` the receiver sees:
// deterministic, so adding the same message twice keeps one.
//   start      <jobId>@start@<enqueued ms>   the first move to processing of
//                                            this submit (a job taken up again
//                                            after its worker died, or run
//                                            after a hand-back, is not a start)
//   progress   <jobId>@progress@<now / 500 ms>  at most one per 500 ms window
//   completed  <jobId>@<event id>            done, failed or cancelled (once)
// `@` cannot occur in a job id (nor `:`, which BullMQ forbids in ids).

/** Progress deliveries: at most one per window of this many ms. */
export const PROGRESS_WINDOW_MS = 500;
/** Longest wait between two tries of a delivery. */
const MAX_BASE_DELAY_MS = 1000;

/** Deliveries BullMQ keeps once finished (Bull Board; and a repeated add within this stays a no-op). */
const KEEP_COMPLETED = { age: 24 * 3600, count: 10_000 };
const KEEP_FAILED = { age: 7 * 24 * 3600, count: 10_000 };

export interface WebhookOutboxOptions {
  /** How long a delivery is retried (config `webhooks.retry_for`). */
  retryForMs: number;
  /** Told of an add that failed (logged by the caller); the status write never sees it. */
  onError?: (error: unknown, delivery: Pick<WebhookDelivery, 'jobId' | 'eventType' | 'messageId'>) => void;
  /** The clock of the progress windows (tests). */
  now?: () => number;
}

/** The webhook event a change is, or null when it is none. */
export function webhookEventOf(change: StatusChange): WebhookEvent | null {
  if (change.type === 'progress') return 'progress';
  const { before, after } = change;
  if (after.status === 'processing' && before?.status !== 'processing') return 'start';
  if (isFinalState(after.status) && !(before && isFinalState(before.status))) return 'completed';
  return null;
}

/**
 * BullMQ's retry settings that spread the tries of a delivery over about
 * `retryForMs`: exponential backoff (base, 2×base, 4×base, ...) with a base
 * of 1 s, smaller when `retryForMs` is short (tests), and as many retries as
 * make the waits add up to `retryForMs` within a factor of √2. 1 h: 12
 * retries, 13 tries in all.
 */
export function retryPlan(retryForMs: number): { attempts: number; backoff: { type: 'exponential'; delay: number } } {
  const delay = Math.max(10, Math.min(MAX_BASE_DELAY_MS, Math.floor(retryForMs / 32)));
  // n retries wait delay * (2^n - 1) in all.
  const retries = retryForMs <= 0 ? 0 : Math.max(1, Math.round(Math.log2(retryForMs / delay + 1)));
  return { attempts: retries + 1, backoff: { type: 'exponential', delay } };
}

/** The delivery id (and `webhook-id`) of a change; see the table above. */
export function webhookMessageId(change: StatusChange, event: WebhookEvent, now: number): string {
  if (event === 'progress') return `${change.jobId}@progress@${Math.floor(now / PROGRESS_WINDOW_MS)}`;
  if (event === 'start') {
    const enqueued = Date.parse(change.after.enqueued_at ?? '');
    return `${change.jobId}@start@${Number.isFinite(enqueued) ? enqueued : change.eventId}`;
  }
  return `${change.jobId}@${change.eventId}`;
}

/** Queues the webhook deliveries of the status changes it observes. */
export class WebhookOutbox {
  private current: Queue | null = null;
  private readonly plan: ReturnType<typeof retryPlan>;
  private readonly now: () => number;

  constructor(
    private readonly connection: RedisClient,
    private readonly keys: RedisKeys,
    private readonly options: WebhookOutboxOptions,
  ) {
    this.plan = retryPlan(options.retryForMs);
    this.now = options.now ?? Date.now;
  }

  /** Observes every change `statuses` writes from now on. */
  attach(statuses: StatusStore): this {
    statuses.observe((change) => this.observe(change));
    return this;
  }

  /** The delivery a change makes, if its job asked for this event; null otherwise. */
  deliveryOf(change: StatusChange): WebhookDelivery | null {
    const { after } = change;
    if (!after.webhook) return null;
    const event = webhookEventOf(change);
    const asked = after.webhook_events?.length ? after.webhook_events : ['completed'];
    if (!event || !asked.includes(event)) return null;
    return {
      jobId: change.jobId,
      url: after.webhook,
      eventType: event,
      status: { ...publicStatus(after, false), job_id: change.jobId },
      messageId: webhookMessageId(change, event, this.now()),
    };
  }

  /** Not awaited by the status store; never throws. */
  observe(change: StatusChange): void {
    let delivery: WebhookDelivery | null;
    try {
      delivery = this.deliveryOf(change);
    } catch (error) {
      this.options.onError?.(error, { jobId: change.jobId, eventType: 'completed', messageId: '' });
      return;
    }
    if (delivery) void this.add(delivery);
  }

  private async add(delivery: WebhookDelivery): Promise<void> {
    const queue = this.queue();
    try {
      await queue.add(delivery.eventType, delivery, {
        jobId: delivery.messageId,
        ...this.plan,
        removeOnComplete: KEEP_COMPLETED,
        removeOnFail: KEEP_FAILED,
      });
    } catch (error) {
      this.options.onError?.(error, delivery);
    }
  }

  private queue(): Queue {
    if (this.current) return this.current;
    const queue = new Queue(this.keys.bullName(WEBHOOK_QUEUE), { connection: this.connection, prefix: this.keys.prefix });
    queue.on('error', () => undefined); // surfaced on the adds
    // BullMQ keeps a failed first setup (Redis was down) for good: drop it, the next add builds a fresh one.
    queue.waitUntilReady().catch(() => {
      if (this.current === queue) this.current = null;
      queue.close().catch(() => undefined);
    });
    return (this.current = queue);
  }

  async close(): Promise<void> {
    const queue = this.current;
    this.current = null;
    await queue?.close().catch(() => undefined);
  }
}

export const WEBHOOK_OUTCOMES = ['delivered', 'retried', 'failed', 'refused'] as const;
/**
 * delivered: the receiver answered 2xx. retried: a try failed (an answer
 * other than 2xx, a network error, a timeout) and another follows. failed:
 * the last try failed. refused: the host is not allowed or resolves to a
 * private address (never retried).
 */
export type WebhookOutcome = (typeof WEBHOOK_OUTCOMES)[number];

/** Delivery outcomes counted in Redis: one count for every gateway, kept across restarts. */
export class WebhookCounts {
  private readonly key: string;

  constructor(
    private readonly redis: RedisClient,
    keys: RedisKeys,
  ) {
    this.key = `${keys.prefix}:metrics:webhooks`;
  }

  /** Fire and forget: a lost increment must never fail a delivery. */
  count(outcome: WebhookOutcome): void {
    this.redis.hincrby(this.key, outcome, 1).catch(() => undefined);
  }

  async read(): Promise<Record<WebhookOutcome, number>> {
    const all = await this.redis.hgetall(this.key);
    return Object.fromEntries(WEBHOOK_OUTCOMES.map((outcome) => [outcome, Number(all[outcome] ?? 0)])) as Record<WebhookOutcome, number>;
  }
}
