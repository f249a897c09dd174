import { uniqueId } from '@shepherd/testing';
import { floorThroughput, startFloor } from './floor';
import { benchRedis, measureCpu, type ProcessKinds } from './procs';
import { percentiles, shepherdLatency, shepherdThroughput } from './scenarios';
import { LocalShepherd } from './shepherd';

// `node bench/dist/quick.js`: the bench's two headline figures alone (CPU
// per job at saturation with 2 sheep, and idle latency), floor and
// Shepherd, in ~1 min: for trying a change. `pnpm bench` is the record.

const JOBS = Number(process.env.QUICK_JOBS ?? 600);

async function main(): Promise<void> {
  const redis = await benchRedis();
  const withRedis = (kinds: ProcessKinds): ProcessKinds => (redis.pid ? { ...kinds, redis: [redis.pid] } : kinds);
  const perJob = (cpu: Record<string, number>) =>
    Object.entries(cpu)
      .map(([kind, seconds]) => `${kind} ${((seconds * 1000) / JOBS).toFixed(2)}`)
      .join(', ');
  const floor = await startFloor({ redisUrl: redis.url, prefix: uniqueId('floor'), sheep: 2 });
  await floorThroughput(floor, 50);
  const floorRun = await measureCpu(() => withRedis(floor.processes()), () => floorThroughput(floor, JOBS));
  await floor.stop();
  const shepherd = new LocalShepherd(redis.url, ['s1', 's2']);
  try {
    await shepherd.start();
    await shepherd.startWorker('s1');
    const idle = percentiles(await shepherdLatency(shepherd, 100));
    await shepherd.startWorker('s2');
    await shepherdThroughput(shepherd, 50);
    const run = await measureCpu(() => withRedis(shepherd.processes()), () => shepherdThroughput(shepherd, JOBS));
    const total = (cpu: Record<string, number>) => (Object.values(cpu).reduce((a, b) => a + b, 0) * 1000) / JOBS;
    console.log(`floor    ${floorRun.value.toFixed(0)} jobs/s, CPU ms/job ${total(floorRun.cpu).toFixed(2)} (${perJob(floorRun.cpu)})`);
    console.log(`shepherd ${run.value.toFixed(0)} jobs/s, CPU ms/job ${total(run.cpu).toFixed(2)} (${perJob(run.cpu)}); idle p50 ${idle.p50.toFixed(1)} ms`);
  } finally {
    await shepherd.stop();
    await redis.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
