import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { tempDir, uniqueId } from '@shepherd/testing';
import { floorLatency, floorThroughput } from './floor';
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
import { LocalShepherd, REPO } from './shepherd';
import { formatMs, type Percentiles } from './stats';

// `pnpm bench`: Shepherd next to the floor (the unavoidable work of a job,
// raw clients in one process), measured in one run on this machine. Sizes
// can be lowered for a quick look: BENCH_SCALE=0.2 pnpm bench.

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const n = (count: number) => Math.max(5, Math.round(count * SCALE));
const LATENCY_JOBS = n(200);
const THROUGHPUT_JOBS = n(400);
const BUSY_JOBS = n(150);
const SWAP_JOBS = n(200);
const BACKLOG = n(10_000);
const STREAM_BYTES = Math.round(1024 ** 3 * Math.min(1, SCALE));

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

async function main(): Promise<void> {
  const floorOptions = { redisUrl: REDIS_URL, prefix: uniqueId('floor'), dir: tempDir('floor') };
  const shepherd = new LocalShepherd(REDIS_URL, ['s1', 's2']);
  await shepherd.start();
  const results: Record<string, unknown> = {};
  try {
    await shepherd.startWorker('s1');
    log('idle latency: floor, then Shepherd');
    const floorIdle = await floorLatency({ ...floorOptions, jobs: LATENCY_JOBS });
    const shepherdIdle = percentiles(await shepherdLatency(shepherd, LATENCY_JOBS));
    results.latency = { floor: strip(floorIdle), shepherd: shepherdIdle };

    log('saturated throughput, 1 sheep');
    const floor1 = (await floorThroughput({ ...floorOptions, jobs: THROUGHPUT_JOBS, concurrency: 16, sheep: 1 })).jobsPerSecond;
    const shepherd1 = await shepherdThroughput(shepherd, THROUGHPUT_JOBS);
    log('saturated throughput, 2 sheep');
    await shepherd.startWorker('s2');
    const floor2 = (await floorThroughput({ ...floorOptions, jobs: THROUGHPUT_JOBS, concurrency: 16, sheep: 2 })).jobsPerSecond;
    const shepherd2 = await shepherdThroughput(shepherd, THROUGHPUT_JOBS);
    results.throughput = { floor: { oneSheep: floor1, twoSheep: floor2 }, shepherd: { oneSheep: shepherd1, twoSheep: shepherd2 } };

    log('model swaps, 2 sheep, mixed models');
    const models = mixedModels(SWAP_JOBS);
    const swaps = await shepherdSwaps(shepherd, models);
    results.swaps = { jobs: SWAP_JOBS, shepherdRunnerStarts: swaps, roundRobinRunnerStarts: roundRobinLoads(models, 2) };

    log('runner busy fraction, 1 sheep, 20 ms jobs, backlog');
    await shepherd.stopWorker('s2');
    results.busyFraction = await runnerBusyFraction(shepherd, BUSY_JOBS, 20);

    log(`RSS while ${STREAM_BYTES} bytes stream through`);
    results.stream = { bytes: STREAM_BYTES, ...(await streamGrowth(shepherd, STREAM_BYTES)) };
    await shepherd.stopWorker('copy');

    log(`RSS with ${BACKLOG} queued jobs`);
    await shepherd.stopWorker('s1');
    results.backlog = { jobs: BACKLOG, ...(await rssWithBacklog(shepherd, BACKLOG, 's2')) };
  } finally {
    await shepherd.stop();
  }
  write(results);
}

function strip(p: Percentiles & { samplesMs?: number[] }): Percentiles {
  const { samplesMs: _samples, ...rest } = p;
  return rest;
}

interface Row {
  what: string;
  floor: string;
  shepherd: string;
  ratio: string;
  target: string;
  met: boolean | null;
}

function write(results: Record<string, unknown>): void {
  const r = results as {
    latency: { floor: Percentiles; shepherd: Percentiles };
    throughput: { floor: { oneSheep: number; twoSheep: number }; shepherd: { oneSheep: number; twoSheep: number } };
    swaps: { jobs: number; shepherdRunnerStarts: number; roundRobinRunnerStarts: number };
    busyFraction: number;
    stream: { bytes: number; gatewayMb: number; workerMb: number; seconds: number };
    backlog: { jobs: number; gatewayMb: number; workerMb: number; gatewayIdleMb: number };
  };
  const rows: Row[] = [];
  for (const p of ['p50', 'p95', 'p99'] as const) {
    const ratio = r.latency.shepherd[p] / r.latency.floor[p];
    rows.push({ what: `idle latency ${p}`, floor: formatMs(r.latency.floor[p]), shepherd: formatMs(r.latency.shepherd[p]), ratio: `${ratio.toFixed(2)}×`, target: '≤ 1.5× floor', met: ratio <= 1.5 });
  }
  for (const [label, key] of [['1 sheep', 'oneSheep'], ['2 sheep', 'twoSheep']] as const) {
    const ratio = r.throughput.shepherd[key] / r.throughput.floor[key];
    rows.push({ what: `saturated throughput, ${label}`, floor: `${r.throughput.floor[key].toFixed(0)} jobs/s`, shepherd: `${r.throughput.shepherd[key].toFixed(0)} jobs/s`, ratio: `${(ratio * 100).toFixed(0)}%`, target: '≥ 70% of floor', met: ratio >= 0.7 });
  }
  rows.push({ what: 'runner busy, 20 ms jobs, backlog', floor: '-', shepherd: `${(r.busyFraction * 100).toFixed(1)}%`, ratio: '-', target: '≥ 97%', met: r.busyFraction >= 0.97 });
  const swapRatio = r.swaps.shepherdRunnerStarts / r.swaps.roundRobinRunnerStarts;
  rows.push({ what: `runner starts, ${r.swaps.jobs} mixed jobs of 2 models, 2 sheep`, floor: `${r.swaps.roundRobinRunnerStarts} (round robin)`, shepherd: String(r.swaps.shepherdRunnerStarts), ratio: `${(swapRatio * 100).toFixed(0)}%`, target: '≤ 5% of round robin', met: swapRatio <= 0.05 });
  rows.push({ what: `RSS growth, ${(r.stream.bytes / 1024 ** 3).toFixed(2)} GB in, through a runner, out`, floor: '-', shepherd: `gateway +${r.stream.gatewayMb.toFixed(0)} MB, worker +${r.stream.workerMb.toFixed(0)} MB (${r.stream.seconds.toFixed(0)} s)`, ratio: '-', target: '≤ 50 MB', met: Math.max(r.stream.gatewayMb, r.stream.workerMb) <= 50 });
  rows.push({ what: `RSS with ${r.backlog.jobs} queued jobs`, floor: '-', shepherd: `gateway ${r.backlog.gatewayMb.toFixed(0)} MB (idle ${r.backlog.gatewayIdleMb.toFixed(0)}), worker ${r.backlog.workerMb.toFixed(0)} MB`, ratio: '-', target: '-', met: null });

  const date = new Date().toISOString();
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Node ${process.version}, filesystem storage, local Redis`;
  const table = [
    '| measure | floor | Shepherd | ratio | target | met |',
    '|---|---|---|---|---|---|',
    ...rows.map((row) => `| ${row.what} | ${row.floor} | ${row.shepherd} | ${row.ratio} | ${row.target} | ${row.met === null ? '' : row.met ? 'yes' : 'no'} |`),
  ].join('\n');
  const markdown = `# Shepherd benchmark\n\n${date} on ${machine}.\n\n${table}\n`;
  const dir = join(REPO, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const stamp = date.slice(0, 16).replace(/[:T]/g, '-');
  writeFileSync(join(dir, `${stamp}.md`), markdown);
  writeFileSync(join(dir, `${stamp}.json`), JSON.stringify({ date, machine, scale: SCALE, results }, null, 2));
  writeFileSync(join(dir, 'latest.md'), markdown);
  process.stdout.write(`${markdown}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
