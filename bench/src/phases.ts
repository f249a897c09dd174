// One measured phase of the bench: a saturated run with the CPU each kind of
// process used, the event-loop delay of the gateway and workers, and (on S3)
// the requests that reached the S3 server.
import type { S3Column } from './children';
import { total } from './children';
import type { LoopDelay, LoopProbe } from './loop';
import { worst } from './loop';
import { measureCpu, type ProcessKinds } from './procs';
import type { S3Counts } from './s3-node';

export interface Saturated {
  jobs: number;
  jobsPerSecond: number;
  /** CPU ms per job by kind (gateway, workers, runners, redis, s3), plus `total`. */
  cpuMsPerJob: Record<string, number>;
  /** Event-loop delay during the phase: the gateway's, and the worst worker's. */
  loop: { gateway?: LoopDelay; workers?: LoopDelay };
  /** S3 requests per job, and the counts by operation. */
  s3?: { perJob: number; counts: S3Counts };
}

export async function saturated(
  probe: LoopProbe,
  kinds: () => ProcessKinds,
  jobs: number,
  run: () => Promise<number>,
  s3?: S3Column,
): Promise<Saturated> {
  const start = kinds();
  const probed = [...(start.gateway ?? []), ...(start.workers ?? [])];
  await probe.reset(probed);
  if (s3) await s3.counts(true);
  const { value: jobsPerSecond, cpu } = await measureCpu(kinds, run);
  const loops = await probe.read(probed);
  const cpuMsPerJob: Record<string, number> = {};
  for (const [kind, seconds] of Object.entries(cpu)) cpuMsPerJob[kind] = (seconds * 1000) / jobs;
  cpuMsPerJob.total = Object.values(cpuMsPerJob).reduce((sum, ms) => sum + ms, 0);
  const result: Saturated = {
    jobs,
    jobsPerSecond,
    cpuMsPerJob,
    loop: { gateway: worst(loops, start.gateway ?? []), workers: worst(loops, start.workers ?? []) },
  };
  if (s3) {
    await new Promise((r) => setTimeout(r, 500)); // writes that follow a job's done
    const counts = await s3.counts(true);
    result.s3 = { perJob: total(counts) / jobs, counts };
  }
  return result;
}

/** The event-loop delay of `pids` while `work` runs. */
export async function loopDuring(probe: LoopProbe, pids: number[], work: () => Promise<unknown>): Promise<LoopDelay | undefined> {
  await probe.reset(pids);
  await work();
  return worst(await probe.read(pids), pids);
}
