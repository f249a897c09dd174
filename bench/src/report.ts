// bench/results/<date>.md|json and latest.md: one table of each measure next
// to the floor's, with the issue's targets and a verdict for each.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type { LoopDelay } from './loop';
import type { Saturated } from './phases';
import { REPO } from './shepherd';
import { formatMs, type Percentiles } from './stats';

export interface S3Layout {
  layout: 'bucket-per-job' | 'single-bucket';
  latency: { floor: Percentiles; shepherd: Percentiles };
  saturated: { floor: Saturated; shepherd: Saturated };
}

export interface BenchResults {
  redis: string;
  seconds: number;
  latency: { floor: Percentiles; shepherd: Percentiles };
  saturated: { floor: { oneSheep: Saturated; twoSheep: Saturated }; shepherd: { oneSheep: Saturated; twoSheep: Saturated } };
  bigPayloads: { jobs: number; floorGateway?: LoopDelay; shepherdGateway?: LoopDelay };
  loadtest: { seconds: number; requests: number; http5xx: number; statusLatency?: Percentiles; gatewayLoop?: LoopDelay };
  swaps: { jobs: number; shepherdRunnerStarts: number; roundRobinRunnerStarts: number };
  busyFraction: number;
  stream: { bytes: number; gatewayMb: number; workerMb: number; seconds: number };
  backlog: { jobs: number; gatewayMb: number; workerMb: number; gatewayIdleMb: number };
  s3: S3Layout[];
}

interface Row {
  what: string;
  floor: string;
  shepherd: string;
  ratio: string;
  target: string;
  /** null: no target, shown for reading only. */
  met: boolean | null;
}

const KINDS = ['gateway', 'workers', 'runners', 'redis', 's3'] as const;
const times = (a: number, b: number): string => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : '-');
const cpuMs = (ms: number | undefined): string => (ms === undefined ? '-' : `${ms.toFixed(2)} ms`);
const loopMs = (d: LoopDelay | undefined): string => (d ? `${formatMs(d.p99)} (max ${formatMs(d.max)})` : '-');

function cpuRows(label: string, floor: Saturated, shepherd: Saturated, withTarget: boolean): Row[] {
  const rows: Row[] = [];
  const f = floor.cpuMsPerJob;
  const s = shepherd.cpuMsPerJob;
  const ratio = (s.total ?? NaN) / (f.total ?? NaN);
  rows.push({ what: `CPU per job, ${label}, all processes`, floor: cpuMs(f.total), shepherd: cpuMs(s.total), ratio: times(s.total ?? NaN, f.total ?? NaN), target: withTarget ? '≤ 2× floor' : '-', met: withTarget ? ratio <= 2 : null });
  for (const kind of KINDS) {
    if (f[kind] === undefined && s[kind] === undefined) continue;
    rows.push({ what: `… ${kind}`, floor: cpuMs(f[kind]), shepherd: cpuMs(s[kind]), ratio: times(s[kind] ?? NaN, f[kind] ?? NaN), target: '-', met: null });
  }
  return rows;
}

export function tableRows(r: BenchResults): Row[] {
  const rows: Row[] = [];
  const sat = r.saturated;
  rows.push(...cpuRows('saturated, 2 sheep', sat.floor.twoSheep, sat.shepherd.twoSheep, true));
  const tp1 = { f: sat.floor.oneSheep.jobsPerSecond, s: sat.shepherd.oneSheep.jobsPerSecond };
  const tp2 = { f: sat.floor.twoSheep.jobsPerSecond, s: sat.shepherd.twoSheep.jobsPerSecond };
  rows.push({ what: 'saturated throughput, 1 sheep', floor: `${tp1.f.toFixed(0)} jobs/s`, shepherd: `${tp1.s.toFixed(0)} jobs/s`, ratio: `${((tp1.s / tp1.f) * 100).toFixed(0)}%`, target: '-', met: null });
  rows.push({
    what: 'saturated throughput, 2 sheep',
    floor: `${tp2.f.toFixed(0)} jobs/s`,
    shepherd: `${tp2.s.toFixed(0)} jobs/s`,
    ratio: `${((tp2.s / tp2.f) * 100).toFixed(0)}%`,
    target: `≥ 60% of floor and > Shepherd's 1 sheep (${tp1.s.toFixed(0)})`,
    met: tp2.s >= 0.6 * tp2.f && tp2.s > tp1.s,
  });
  for (const p of ['p50', 'p95', 'p99'] as const) {
    const f = r.latency.floor[p];
    const s = r.latency.shepherd[p];
    const target = p === 'p50';
    rows.push({ what: `idle latency ${p}`, floor: formatMs(f), shepherd: formatMs(s), ratio: times(s, f), target: target ? '≤ 2× floor' : '-', met: target ? s / f <= 2 : null });
  }
  rows.push({ what: 'runner busy, 20 ms jobs, backlog, default prefetch', floor: '-', shepherd: `${(r.busyFraction * 100).toFixed(1)}%`, ratio: '-', target: '≥ 97%', met: r.busyFraction >= 0.97 });
  for (const who of ['gateway', 'workers'] as const) {
    const f = sat.floor.twoSheep.loop[who];
    const s = sat.shepherd.twoSheep.loop[who];
    rows.push({ what: `event-loop delay p99, ${who === 'workers' ? 'worst worker' : 'gateway'}, saturated 2 sheep`, floor: loopMs(f), shepherd: loopMs(s), ratio: times(s?.p99 ?? NaN, f?.p99 ?? NaN), target: '-', met: null });
  }
  const big = r.bigPayloads;
  const bigP99 = big.shepherdGateway?.p99 ?? NaN;
  rows.push({ what: `gateway event-loop delay p99, ${big.jobs} jobs with 10 MB payloads arriving (4 clients)`, floor: loopMs(big.floorGateway), shepherd: loopMs(big.shepherdGateway), ratio: times(bigP99, big.floorGateway?.p99 ?? NaN), target: '≤ 20 ms', met: bigP99 <= 20 });
  const statusP99 = r.loadtest.statusLatency?.p99 ?? NaN;
  rows.push({ what: `GET /status p99 under the load test (${r.loadtest.seconds} s, 10 connections)`, floor: '-', shepherd: formatMs(statusP99), ratio: '-', target: '≤ 50 ms', met: statusP99 <= 50 });
  rows.push({ what: `gateway RSS with ${r.backlog.jobs} queued jobs`, floor: '-', shepherd: `${r.backlog.gatewayMb.toFixed(0)} MB (idle ${r.backlog.gatewayIdleMb.toFixed(0)}; worker ${r.backlog.workerMb.toFixed(0)})`, ratio: '-', target: '≤ 200 MB', met: r.backlog.gatewayMb <= 200 });
  for (const s3 of r.s3) {
    const { floor: f, shepherd: s } = s3.saturated;
    rows.push({ what: `S3 ${s3.layout}: idle latency p50`, floor: formatMs(s3.latency.floor.p50), shepherd: formatMs(s3.latency.shepherd.p50), ratio: times(s3.latency.shepherd.p50, s3.latency.floor.p50), target: '-', met: null });
    rows.push({ what: `S3 ${s3.layout}: saturated throughput, 2 sheep`, floor: `${f.jobsPerSecond.toFixed(0)} jobs/s`, shepherd: `${s.jobsPerSecond.toFixed(0)} jobs/s`, ratio: `${((s.jobsPerSecond / f.jobsPerSecond) * 100).toFixed(0)}%`, target: '-', met: null });
    const fr = f.s3?.perJob ?? NaN;
    const sr = s.s3?.perJob ?? NaN;
    rows.push({ what: `S3 ${s3.layout}: S3 requests per job`, floor: fr.toFixed(2), shepherd: sr.toFixed(2), ratio: times(sr, fr), target: '≤ floor', met: sr <= fr + 1e-9 });
    rows.push(...cpuRows(`S3 ${s3.layout}, saturated, 2 sheep`, f, s, false));
  }
  const swapRatio = r.swaps.shepherdRunnerStarts / r.swaps.roundRobinRunnerStarts;
  rows.push({ what: `runner starts, ${r.swaps.jobs} mixed jobs of 2 models, 2 sheep`, floor: `${r.swaps.roundRobinRunnerStarts} (round robin)`, shepherd: String(r.swaps.shepherdRunnerStarts), ratio: `${(swapRatio * 100).toFixed(0)}%`, target: '≤ 5% of round robin', met: swapRatio <= 0.05 });
  rows.push({ what: `RSS growth, ${(r.stream.bytes / 1024 ** 3).toFixed(2)} GB in, through a runner, out`, floor: '-', shepherd: `gateway +${r.stream.gatewayMb.toFixed(0)} MB, worker +${r.stream.workerMb.toFixed(0)} MB (${r.stream.seconds.toFixed(0)} s)`, ratio: '-', target: '≤ 50 MB', met: Math.max(r.stream.gatewayMb, r.stream.workerMb) <= 50 });
  return rows;
}

export function writeResults(results: BenchResults, scale: number): void {
  const date = new Date().toISOString();
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Node ${process.version}, ${results.redis}`;
  const rows = tableRows(results);
  const table = [
    '| measure | floor | Shepherd | ratio | target | verdict |',
    '|---|---|---|---|---|---|',
    ...rows.map((row) => `| ${row.what} | ${row.floor} | ${row.shepherd} | ${row.ratio} | ${row.target} | ${row.met === null ? '' : row.met ? 'met' : 'missed'} |`),
  ].join('\n');
  const notes = [
    `BENCH_SCALE=${scale}; the run took ${(results.seconds / 60).toFixed(1)} min. Compare within this run only: ratios, not absolute times.`,
    'CPU per job: utime+stime from /proc of each process over the saturated phase, divided by its jobs; the HTTP clients (this bench) are not counted.',
    "Processes: the floor's gateway, a worker and a runner per sheep (bench/src/floor-node.ts); Shepherd's gateway, workers and their runners; the private Redis; s3rver (S3 rows).",
    'Event-loop delay: perf_hooks.monitorEventLoopDelay (10 ms resolution) preloaded into each process (bench/src/loop-probe.cjs).',
    'S3: s3rver in its own process behind a counting proxy; requests per job counted over the saturated phase.',
    "The client learns a job is done from the floor's worker over IPC, from Shepherd through one `wait_ready` per job: that request is in Shepherd's gateway figure.",
  ];
  const markdown = `# Shepherd benchmark\n\n${date} on ${machine}.\n\n${table}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`;
  const dir = join(REPO, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const stamp = date.slice(0, 16).replace(/[:T]/g, '-');
  writeFileSync(join(dir, `${stamp}.md`), markdown);
  writeFileSync(join(dir, `${stamp}.json`), JSON.stringify({ date, machine, scale, results }, null, 2));
  writeFileSync(join(dir, 'latest.md'), markdown);
  process.stdout.write(`${markdown}\n`);
}
