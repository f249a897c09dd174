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
  /** Runner time limit in ms; none when unset. */
  timeoutMs: z.number().int().positive().optional(),
  /** The job fails when no runner took it by then (ms since the epoch). */
  startBy: z.number().int().positive().optional(),
  /** -100..100 (0 when unset). */
  priority: z.number().int().min(-100).max(100).optional(),
  /**
   * The job's input paths when the gateway knows them all (a payload makes
   * the one file `input`): the worker then reads them without listing
   * inputs/ in storage first. Absent: the worker lists.
   */
  inputs: z.array(z.string().min(1).max(800)).max(1000).optional(),
});
export type JobData = z.infer<typeof JobDataSchema>;

/** The failure of a job no sheep took before its `startBy` (queue_timeout). */
export function notStartedError(data: Pick<JobData, 'enqueuedAt' | 'startBy'>): { message: string; exception_type: string } {
  const seconds = data.startBy ? Math.max(0, Math.round((data.startBy - Date.parse(data.enqueuedAt)) / 1000)) : 0;
  return { message: `The job was not started within ${seconds} s (its queue timeout)`, exception_type: 'QueueTimeout' };
}

/** The failure of a job whose runner passed its time limit. */
export function timedOutError(timeoutMs: number): { message: string; exception_type: string } {
  return { message: `The job timed out after ${Math.round(timeoutMs / 100) / 10} s`, exception_type: 'Timeout' };
}
