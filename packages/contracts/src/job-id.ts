// Job ids become storage names: a bucket (bucket-per-job layout) or a key
// prefix / directory (single-bucket and filesystem layouts). Each layout has
// its own rule; the gateway checks the one its storage uses.

export type JobIdRule = 'bucket' | 'key';

const BUCKET_ID = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const IPV4_LIKE = /^\d+\.\d+\.\d+\.\d+$/;

export const JOB_ID_RULES: Record<JobIdRule, string> = {
  bucket:
    '3-63 characters: lowercase letters, digits, "." and "-", starting and ending with a letter or digit, no "..", not an IP address',
  key: '1-128 characters: letters, digits, ".", "_" and "-", starting with a letter or digit, no ".."',
};

/** Returns null when the id is valid, or a message saying what is allowed. */
export function checkJobId(jobId: string, rule: JobIdRule): string | null {
  const ok =
    rule === 'bucket'
      ? BUCKET_ID.test(jobId) && !jobId.includes('..') && !IPV4_LIKE.test(jobId)
      : KEY_ID.test(jobId) && !jobId.includes('..');
  return ok ? null : `Invalid job_id ${JSON.stringify(jobId)}: allowed are ${JOB_ID_RULES[rule]}`;
}
