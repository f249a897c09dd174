import { z } from 'zod';
import { JobStatusSchema } from './job-status.schema';
import { WEBHOOK_EVENTS } from './start-job.schema';

// The queue of webhook deliveries, under the same Redis prefix as the job
// queues. Its name is stored in Redis keys: renaming it strands the
// deliveries that wait under the old name. (Job queues start with `model.`
// or `sheep.`, so it never collides with one.)
export const WEBHOOK_QUEUE = 'webhooks';

/**
 * One webhook call, as the status writers (gateway, workers) queue it and
 * the gateway's delivery worker sends it. The URL is the job's (it may hold
 * a token of the receiver's, like the status record it comes from); the
 * signing secret stays in the config.
 */
export const WebhookDeliverySchema = z.object({
  jobId: z.string(),
  url: z.string(),
  eventType: z.enum(WEBHOOK_EVENTS),
  /** The body sent: the public status (no traceback, no token, no webhook) plus `job_id`. */
  status: JobStatusSchema.extend({ job_id: z.string() }),
  /** `webhook-id`: unique per message, the same on every retry of it. */
  messageId: z.string(),
});
export type WebhookDelivery = z.infer<typeof WebhookDeliverySchema>;
