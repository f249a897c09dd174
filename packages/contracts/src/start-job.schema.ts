import { z } from 'zod';
import { ModelSchema } from './model.schema';

/** What a webhook can be called on: the job started, its runner reported progress, it ended (done, failed or cancelled). */
export const WEBHOOK_EVENTS = ['start', 'progress', 'completed'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** A job's place in its queue: higher runs sooner; equal priorities keep submit order. */
export const MIN_PRIORITY = -100;
export const MAX_PRIORITY = 100;

/** Longest time limit a request may ask for (the config may cap it lower). */
const MAX_SECONDS = 30 * 24 * 3600;
const seconds = () => z.number().positive('must be more than 0 seconds').max(MAX_SECONDS, `must be at most ${MAX_SECONDS} seconds`);

/**
 * Body of `POST /start-job`: the original's fields, then ours (all optional,
 * so the original's clients keep working).
 */
export const StartJobRequestSchema = z.strictObject({
  job_id: z.string().min(1, 'must not be empty'),
  model: ModelSchema,
  payload: z.string().nullish(),
  sheep_id: z.string().min(1).nullish(),
  /** Seconds the runner may work on the job before it is stopped and the job fails (`Timeout`). */
  timeout: seconds().nullish(),
  /** Seconds the job may wait for a sheep before it fails (`QueueTimeout`). */
  queue_timeout: seconds().nullish(),
  /** -100..100, default 0: higher runs sooner. */
  priority: z.number().int('must be a whole number').min(MIN_PRIORITY).max(MAX_PRIORITY).nullish(),
  /** An http(s) URL that gets a signed POST of the status on the events chosen in `webhook_events`. */
  webhook: z.url({ protocol: /^https?$/, error: 'expected an http or https URL' }).max(2048).nullish(),
  /** Default `["completed"]`. */
  webhook_events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).max(3).nullish(),
});
export type StartJobRequest = z.infer<typeof StartJobRequestSchema>;
