/** How long a job seen to exist is trusted to still exist (single-bucket writes skip their LIST). */
export const SEEN_JOB_TRUST_MS = 30_000;
const SEEN_JOBS_MAX = 10_000;

/**
 * What this process knows of a job without asking S3:
 * - `stored`: S3 showed objects of it (or this process wrote one) a moment ago;
 * - `created`: this process created it and has stored nothing in it yet, so
 *   S3 has no object to show it by (single-bucket jobs exist through their objects).
 */
export type SeenState = 'stored' | 'created';

/** Jobs seen to exist, each trusted for SEEN_JOB_TRUST_MS, the oldest dropped past SEEN_JOBS_MAX. */
export class SeenJobs {
  private readonly jobs = new Map<string, { until: number; state: SeenState }>();

  state(jobId: string): SeenState | undefined {
    const seen = this.jobs.get(jobId);
    if (seen === undefined) return undefined;
    if (seen.until > Date.now()) return seen.state;
    this.jobs.delete(jobId);
    return undefined;
  }

  mark(jobId: string, state: SeenState): void {
    if (this.jobs.size >= SEEN_JOBS_MAX) {
      const oldest = this.jobs.keys().next().value;
      if (oldest !== undefined) this.jobs.delete(oldest);
    }
    this.jobs.delete(jobId); // re-inserted last: the map stays oldest first
    this.jobs.set(jobId, { until: Date.now() + SEEN_JOB_TRUST_MS, state });
  }

  forget(jobId: string): void {
    this.jobs.delete(jobId);
  }
}
