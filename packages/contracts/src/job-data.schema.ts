import { z } from 'zod';
import { ModelSchema } from './model.schema';

/**
 * What a queued job carries in BullMQ. Ids and names only: inputs stay in
 * storage, secrets in the config.
 */
export const JobDataSchema = z.object({
  jobId: z.string(),
  model: ModelSchema,
  /** Set when the client pinned the job to one sheep. */
  sheepId: z.string().optional(),
  enqueuedAt: z.string(),
  /** Name of the API token that submitted it (with `auth`). */
  owner: z.string().optional(),
});
export type JobData = z.infer<typeof JobDataSchema>;
