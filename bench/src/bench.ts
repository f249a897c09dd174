import { uniqueId } from '@shepherd/testing';
import { startS3Column, type S3Column } from './children';
import { floorLatency, floorThroughput, startFloor, type Floor } from './floor';
import { runLoadTest } from './loadtest';
import { LoopProbe } from './loop';
import { loopDuring, saturated, type Saturated } from './phases';
import { benchRedis, type ProcessKinds } from './procs';
import { writeResults, type BenchResults, type S3Layout } from './report';
import {
  mixedModels,
  percentiles,
  roundRobinLoads,
  rssWithBacklog,
  runnerBusyFraction,
  shepherdLatency,
  shepherdSwaps,
  shepherdThroughput,
  streamGrowth,
} from './scenarios';
import { LocalShepherd } from './shepherd';

// `pnpm bench`: Shepherd next to the floor (the unavoidable work of a job,
// raw clients, in processes shaped like Shepherd's), measured in one run on
// this machine, with the CPU of every process per job. Sizes can be lowered
// for a quick look: BENCH_SCALE=0.2 pnpm bench.

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const n = (count: number) => Math.max(5, Math.round(count * SCALE));
const LATENCY_JOBS = n(200);
const THROUGHPUT_JOBS = n(400);
const BUSY_JOBS = n(150);
const SWAP_JOBS = n(200);
const BIG_JOBS = n(40);
const S3_LATENCY_JOBS = n(50);
const S3_THROUGHPUT_JOBS = n(200);
/** The target is about 10,000 queued jobs: not scaled. */
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 10_000);
const LOADTEST_SECONDS = Math.max(5, Math.round(30 * SCALE));
const STREAM_BYTES = Math.round(1024 ** 3 * Math.min(1, SCALE));
const BIG_PAYLOAD = JSON.stringify({ blob: 'x'.repeat(10 * 1024 * 1024) });

function log(message: string): void {
  process.stderr.write(`[bench] ${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

async function main(): Promise<void> {
  const started = Date.now();
  const redis = await benchRedis();
  const probe = new LoopProbe();
  const env = probe.env();
  const withRedis = (kinds: ProcessKinds): ProcessKinds => (redis.pid ? { ...kinds, redis: [redis.pid] } : kinds);
  const floorOptions = { redisUrl: redis.url, prefix: uniqueId('floor'), env };
  const results: Partial<BenchResults> = { redis: redis.pid ? `private redis-server, pid ${redis.pid}` : `${redis.url} (CPU not measured)` };
  const shepherd = new LocalShepherd(redis.url, ['s1', 's2'], { env });
  const floors: Floor[] = [];
  const newFloor = async (sheep: 1 | 2, storage?: Parameters<typeof startFloor>[0]['storage']): Promise<Floor> => {
    const floor = await startFloor({ ...floorOptions, sheep, storage });
    floors.push(floor);
    return floor;
  };
  try {
    await shepherd.start();
    await shepherd.startWorker('s1');
    log('idle latency and saturated throughput, 1 sheep: floor, then Shepherd');
    const floor1 = await newFloor(1);
    const floorIdle = await floorLatency(floor1, LATENCY_JOBS);
    const floorSat1 = await saturated(probe, () => withRedis(floor1.processes()), THROUGHPUT_JOBS, () => floorThroughput(floor1, THROUGHPUT_JOBS));
    await floor1.stop();
    const shepherdIdle = percentiles(await shepherdLatency(shepherd, LATENCY_JOBS));
    const shepherdSat1 = await saturated(probe, () => withRedis(shepherd.processes()), THROUGHPUT_JOBS, () => shepherdThroughput(shepherd, THROUGHPUT_JOBS));
    const { samplesMs: _samples, ...floorIdleSummary } = floorIdle;
    results.latency = { floor: floorIdleSummary, shepherd: shepherdIdle };

    log('saturated throughput, 2 sheep, and 10 MB payloads arriving: floor, then Shepherd');
    const floor2 = await newFloor(2);
    const floorSat2 = await saturated(probe, () => withRedis(floor2.processes()), THROUGHPUT_JOBS, () => floorThroughput(floor2, THROUGHPUT_JOBS));
    const floorBig = await loopDuring(probe, floor2.processes().gateway ?? [], () => floorThroughput(floor2, BIG_JOBS, 4, BIG_PAYLOAD));
    await floor2.stop();
    await shepherd.startWorker('s2');
    await shepherdThroughput(shepherd, 20); // warm-up: the second runner starts outside the measured phase
    const shepherdSat2 = await saturated(probe, () => withRedis(shepherd.processes()), THROUGHPUT_JOBS, () => shepherdThroughput(shepherd, THROUGHPUT_JOBS));
    const shepherdBig = await loopDuring(probe, shepherd.processes().gateway ?? [], () => shepherdThroughput(shepherd, BIG_JOBS, 4, BIG_PAYLOAD));
    results.saturated = { floor: { oneSheep: floorSat1, twoSheep: floorSat2 }, shepherd: { oneSheep: shepherdSat1, twoSheep: shepherdSat2 } };
    results.bigPayloads = { jobs: BIG_JOBS, floorGateway: floorBig, shepherdGateway: shepherdBig };

    log(`load test, ${LOADTEST_SECONDS} s, 2 sheep`);
    const gatewayPids = shepherd.processes().gateway ?? [];
    let report: Awaited<ReturnType<typeof runLoadTest>> | undefined;
    const loadtestLoop = await loopDuring(probe, gatewayPids, async () => {
      report = await runLoadTest({ url: shepherd.url, durationSeconds: LOADTEST_SECONDS, maxRequests: 100_000, connections: 10 });
    });
    const status = report?.scenarios.find((s) => s.name === 'GET /status');
    results.loadtest = { seconds: LOADTEST_SECONDS, requests: report?.requests ?? 0, http5xx: report?.http5xx ?? 0, statusLatency: status?.latency, gatewayLoop: loadtestLoop };

    log('model swaps, 2 sheep, mixed models');
    const models = mixedModels(SWAP_JOBS);
    results.swaps = { jobs: SWAP_JOBS, shepherdRunnerStarts: await shepherdSwaps(shepherd, models), roundRobinRunnerStarts: roundRobinLoads(models, 2) };

    log('runner busy fraction, 1 sheep, 20 ms jobs, backlog, default prefetch');
    await shepherd.stopWorker('s2');
    results.busyFraction = await runnerBusyFraction(shepherd, BUSY_JOBS, 20);

    log(`RSS while ${STREAM_BYTES} bytes stream through`);
    results.stream = { bytes: STREAM_BYTES, ...(await streamGrowth(shepherd, STREAM_BYTES)) };
    await shepherd.stopWorker('copy');

    await shepherd.stop();

    log(`RSS with ${BACKLOG} queued jobs, a fresh gateway`);
    // Fresh: the gateway above has just parsed 10 MB bodies, and V8 keeps the heap it grew for them.
    const fresh = new LocalShepherd(redis.url, ['s1'], { env });
    try {
      await fresh.start();
      results.backlog = { jobs: BACKLOG, ...(await rssWithBacklog(fresh, BACKLOG, 's1')) };
    } finally {
      await fresh.stop();
    }

    results.s3 = [];
    for (const layout of ['bucket-per-job', 'single-bucket'] as const) {
      log(`S3 (s3rver behind a counting proxy), ${layout}: floor, then Shepherd`);
      const s3 = await startS3Column();
      try {
        results.s3.push(await s3Layout(layout, s3, newFloor, probe, redis.url, env, withRedis));
      } finally {
        await s3.stop();
      }
    }
  } finally {
    for (const floor of floors) await floor.stop().catch(() => undefined);
    await shepherd.stop().catch(() => undefined);
    probe.remove();
    await redis.stop();
  }
  results.seconds = (Date.now() - started) / 1000;
  writeResults(results as BenchResults, SCALE);
}

async function s3Layout(
  layout: 'bucket-per-job' | 'single-bucket',
  s3: S3Column,
  newFloor: (sheep: 1 | 2, storage: { kind: 's3'; url: string; layout: typeof layout; bucket: string }) => Promise<Floor>,
  probe: LoopProbe,
  redisUrl: string,
  env: NodeJS.ProcessEnv,
  withRedis: (kinds: ProcessKinds) => ProcessKinds,
): Promise<S3Layout> {
  const withS3 = (kinds: ProcessKinds): ProcessKinds => ({ ...withRedis(kinds), s3: [s3.serverPid] });
  log(`… floor, ${layout}`);
  const floor = await newFloor(2, { kind: 's3', url: s3.url, layout, bucket: uniqueId('floor') });
  const floorIdle = percentiles((await floorLatency(floor, S3_LATENCY_JOBS)).samplesMs);
  const floorSat: Saturated = await saturated(probe, () => withS3(floor.processes()), S3_THROUGHPUT_JOBS, () => floorThroughput(floor, S3_THROUGHPUT_JOBS), s3);
  await floor.stop();
  const shepherd = new LocalShepherd(redisUrl, ['s1', 's2'], { env, storage: { kind: 's3', url: s3.url, layout } });
  try {
    log(`… Shepherd, ${layout}`);
    await shepherd.start();
    await shepherd.startWorker('s1');
    await shepherd.startWorker('s2');
    await shepherdThroughput(shepherd, 20); // warm-up: both runners started
    const shepherdIdle = percentiles(await shepherdLatency(shepherd, S3_LATENCY_JOBS, 5));
    const shepherdSat = await saturated(probe, () => withS3(shepherd.processes()), S3_THROUGHPUT_JOBS, () => shepherdThroughput(shepherd, S3_THROUGHPUT_JOBS), s3);
    return { layout, latency: { floor: floorIdle, shepherd: shepherdIdle }, saturated: { floor: floorSat, shepherd: shepherdSat } };
  } finally {
    await shepherd.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
