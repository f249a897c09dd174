import { JobStatusSchema, type JobStatus } from '@shepherd/contracts';

/** The status record's name inside a job, as in the original. */
export const STATUS_FILE = 'job_status.json';

/** Parses a stored status record; `source` names the file or object in the error. */
export function parseStatus(text: string, source: string): JobStatus {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`Corrupt job status ${source}: not JSON (${(error as Error).message})`);
  }
  const result = JobStatusSchema.safeParse(raw);
  if (!result.success) {
    const issues = result.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new Error(`Corrupt job status ${source}: ${issues.join('; ')}`);
  }
  return result.data;
}
