import { z } from 'zod';
import { ModelSchema } from './model.schema';
import { JobStatusSchema } from './job-status.schema';

/** What a worker publishes about its sheep in Redis, refreshed by each heartbeat. */
export const SheepStateSchema = z.object({
  model: ModelSchema.nullable(),
  /** The job id in the runner, or null. */
  request: z.string().nullable(),
  heartbeatAt: z.string(),
  /** Runner starts since the worker started, the first load included. */
  modelLoads: z.number().int().nonnegative().optional(),
});
export type SheepState = z.infer<typeof SheepStateSchema>;

/** A status change (or a runner's progress) as announced on the status channel. */
export const StatusEventSchema = z.object({
  jobId: z.string(),
  /** The event's id in the job's event stream (SSE `id`). */
  id: z.string().optional(),
  type: z.enum(['status', 'progress']).default('status'),
  status: JobStatusSchema,
});
export type StatusEvent = z.infer<typeof StatusEventSchema>;
