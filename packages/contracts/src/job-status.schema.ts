import { z } from 'zod';
import { ModelSchema } from './model.schema';

export const JOB_STATES = ['accepted', 'queued', 'processing', 'done', 'failed', 'cancelled'] as const;
export const JobStateSchema = z.enum(JOB_STATES);
export type JobState = z.infer<typeof JobStateSchema>;

export const ErrorDetailsSchema = z.object({
  message: z.string(),
  exception_type: z.string().nullish(),
  exception_traceback: z.string().nullish(),
});
export type ErrorDetails = z.infer<typeof ErrorDetailsSchema>;

const timestamp = z.iso.datetime({ offset: true }).nullish();

/**
 * The status record, as the original writes it to `job_status.json` and
 * answers on `/jobs/:id/status` (snake_case on the wire).
 */
export const JobStatusSchema = z.object({
  status: JobStateSchema,
  model: ModelSchema,
  error_details: ErrorDetailsSchema.nullish(),
  enqueued_at: timestamp,
  processing_started_at: timestamp,
  finished_at: timestamp,
  /** The runner's last progress report while processing, 0..1 (runners that report it). */
  progress: z.number().min(0).max(1).nullish(),
  progress_message: z.string().nullish(),
  /** The sheep that runs or ran it. */
  sheep_id: z.string().nullish(),
  /** Name of the API token that submitted the job (with `auth`); never shown over HTTP. */
  submitted_by: z.string().nullish(),
  /** Where the job's webhook goes, and on which events; never shown over HTTP (a URL may hold a secret). */
  webhook: z.string().nullish(),
  webhook_events: z.array(z.string()).nullish(),
});

/** Fields a record keeps from the one before, whoever writes it: set at submit, read by later writers. */
export const STICKY_FIELDS = ['submitted_by', 'webhook', 'webhook_events'] as const;
export type JobStatus = z.infer<typeof JobStatusSchema>;

/** The status as shown to clients: tracebacks only in debug mode, like the original. */
export function publicStatus(status: JobStatus, debug: boolean): JobStatus {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- dropped from the answer
  const { submitted_by, webhook, webhook_events, ...shown } = status;
  if (debug || !shown.error_details) return shown;
  const { message } = shown.error_details;
  return { ...shown, error_details: { message } };
}
