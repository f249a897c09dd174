import { Redis } from 'ioredis';
import { benchRedis } from './procs';
import { shepherdThroughput } from './scenarios';
import { LocalShepherd } from './shepherd';

// `node bench/dist/redis-calls.js`: Redis commands per job (INFO
// commandstats over a saturated 2-sheep phase on a private Redis), with the
// microseconds Redis spent in each. Where the Redis CPU per job goes.

const JOBS = Number(process.env.CALLS_JOBS ?? 300);

async function main(): Promise<void> {
  const server = await benchRedis();
  const shepherd = new LocalShepherd(server.url, ['s1', 's2']);
  const redis = new Redis(server.url);
  try {
    await shepherd.start();
    await shepherd.startWorker('s1');
    await shepherd.startWorker('s2');
    await shepherdThroughput(shepherd, 40);
    await redis.config('RESETSTAT');
    await shepherdThroughput(shepherd, JOBS);
    const stats = await redis.info('commandstats');
    const rows = [...stats.matchAll(/cmdstat_([^:]+):calls=(\d+),usec=(\d+)/g)]
      .map(([, name, calls, usec]) => ({ name: name ?? '', perJob: Number(calls) / JOBS, usPerJob: Number(usec) / JOBS }))
      .sort((a, b) => b.usPerJob - a.usPerJob);
    const total = rows.reduce((sum, row) => sum + row.perJob, 0);
    const totalUs = rows.reduce((sum, row) => sum + row.usPerJob, 0);
    console.log(`${JOBS} jobs: ${total.toFixed(1)} commands and ${totalUs.toFixed(0)} µs of Redis time per job`);
    for (const row of rows) console.log(`${row.name.padEnd(24)} ${row.perJob.toFixed(2).padStart(7)} /job ${row.usPerJob.toFixed(1).padStart(8)} µs/job`);
  } finally {
    redis.disconnect();
    await shepherd.stop();
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
