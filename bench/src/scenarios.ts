import { Readable } from 'node:stream';
import { percentiles } from './stats';
import { LocalShepherd, peakRss, rssMb } from './shepherd';

const echo = (version = 'v1') => ({ name: 'echo', version });
let counter = 0;
const nextId = (label: string) => `${label}-${Date.now().toString(36)}-${(counter++).toString(36)}`;

/** Idle: one job at a time, submit → done as the client sees it (POST, then wait_ready). */
export async function shepherdLatency(shepherd: LocalShepherd, jobs: number, warmup = 20): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < jobs + warmup; i++) {
    const jobId = nextId('lat');
    const start = performance.now();
    await shepherd.submit(jobId, echo(), '{}');
    await shepherd.waitDone(jobId);
    if (i >= warmup) samples.push(performance.now() - start);
  }
  return samples;
}

/**
 * Saturated: `jobs` submitted up front by `clients` concurrent clients, each
 * waited for with wait_ready; jobs/s from the first submit to the last done.
 */
export async function shepherdThroughput(shepherd: LocalShepherd, jobs: number, clients = 16, payload = '{}'): Promise<number> {
  const ids = Array.from({ length: jobs }, () => nextId('tp'));
  const done: Promise<unknown>[] = [];
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < ids.length) {
        const jobId = ids[next++] as string;
        await shepherd.submit(jobId, echo(), payload);
        const finished = shepherd.waitDone(jobId);
        finished.catch(() => undefined); // seen by Promise.all below; not an unhandled rejection meanwhile
        done.push(finished);
      }
    }),
  );
  await Promise.all(done);
  return jobs / ((performance.now() - start) / 1000);
}

/**
 * A backlog of jobs that each take `runnerMs` in the runner, on one sheep:
 * the fraction of the wall time (first job start → last job end, as the
 * runner itself recorded them) the runner was working.
 */
export async function runnerBusyFraction(shepherd: LocalShepherd, jobs: number, runnerMs: number): Promise<number> {
  const ids = Array.from({ length: jobs }, () => nextId('busy'));
  await Promise.all(ids.map((jobId) => shepherd.submit(jobId, echo(), JSON.stringify({ sleep_ms: runnerMs }))));
  await Promise.all(ids.map((jobId) => shepherd.waitDone(jobId)));
  const spans = await Promise.all(ids.map(async (jobId) => shepherd.result(jobId)));
  const busy = spans.reduce((sum, r) => sum + ((r.finished_ms as number) - (r.started_ms as number)), 0);
  const first = Math.min(...spans.map((r) => r.started_ms as number));
  const last = Math.max(...spans.map((r) => r.finished_ms as number));
  return busy / (last - first);
}

/** A seeded random sequence of two models, as a mixed workload arrives. */
export function mixedModels(count: number, seed = 7): string[] {
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return (state >> 16) % 2 === 0 ? 'v1' : 'v2'; // the low bits of this generator alternate
  });
}

/** Runner starts round robin would make: job i goes to sheep i mod n, each sheep restarts on every model change. */
export function roundRobinLoads(models: string[], sheep: number): number {
  const held: Array<string | undefined> = new Array(sheep).fill(undefined);
  let loads = 0;
  models.forEach((model, i) => {
    if (held[i % sheep] !== model) loads += 1;
    held[i % sheep] = model;
  });
  return loads;
}

export async function shepherdSwaps(shepherd: LocalShepherd, models: string[]): Promise<number> {
  const before = await loadsOf(shepherd);
  const ids = models.map(() => nextId('swap'));
  for (const [i, jobId] of ids.entries()) await shepherd.submit(jobId, echo(models[i]), JSON.stringify({ sleep_ms: 20 }));
  await Promise.all(ids.map((jobId) => shepherd.waitDone(jobId)));
  return (await loadsOf(shepherd)) - before;
}

async function loadsOf(shepherd: LocalShepherd): Promise<number> {
  let total = 0;
  for (const id of shepherd.workers.keys()) total += (await shepherd.sheepState(id))?.modelLoads ?? 0;
  return total;
}

/** 32 clients submit `count` small jobs to a model no worker serves. */
export async function submitBacklog(shepherd: LocalShepherd, count: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < count) {
        next += 1;
        await shepherd.submit(nextId('q'), { name: 'idle', version: 'v1' }, '{}');
      }
    }),
  );
}

/** RSS of the gateway (and of a worker started afterwards) with `count` jobs waiting in the queue. */
export async function rssWithBacklog(shepherd: LocalShepherd, count: number, sheepId: string): Promise<{ gatewayMb: number; workerMb: number; gatewayIdleMb: number }> {
  const gatewayIdleMb = rssMb(shepherd.gateway?.pid);
  await submitBacklog(shepherd, count);
  const gatewayMb = rssMb(shepherd.gateway?.pid);
  const worker = await shepherd.startWorker(sheepId);
  await new Promise((r) => setTimeout(r, 3000)); // let it take its first jobs
  return { gatewayMb, workerMb: rssMb(worker.pid), gatewayIdleMb };
}

/** RSS growth of gateway and worker while `bytes` stream in over HTTP, through a copying runner, and back out. */
export async function streamGrowth(shepherd: LocalShepherd, bytes: number): Promise<{ gatewayMb: number; workerMb: number; seconds: number }> {
  const worker = shepherd.workers.get('copy') ?? (await shepherd.startWorker('copy'));
  const jobId = nextId('big');
  const started = performance.now();
  const { peaks, before } = await peakRss([shepherd.gateway?.pid, worker.pid], async () => {
    const chunk = Buffer.alloc(1024 * 1024, 120);
    let sent = 0;
    const body = new Readable({
      read() {
        const size = Math.min(chunk.length, bytes - sent);
        sent += size;
        this.push(size > 0 ? chunk.subarray(0, size) : null);
      },
    });
    const put = await fetch(`${shepherd.url}/jobs/${jobId}/inputs/input`, {
      method: 'PUT',
      headers: { 'content-length': String(bytes) },
      body: Readable.toWeb(body) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    if (put.status !== 201) throw new Error(`upload: ${put.status} ${await put.text()}`);
    await shepherd.submit(jobId, { name: 'copy', version: 'v1' }, undefined, 'copy');
    await shepherd.waitDone(jobId);
    const result = await fetch(`${shepherd.url}/jobs/${jobId}/result`);
    let received = 0;
    for await (const part of result.body as unknown as AsyncIterable<Uint8Array>) received += part.length;
    if (received !== bytes) throw new Error(`result: ${received} bytes of ${bytes}`);
  });
  return {
    gatewayMb: (peaks[0] ?? 0) - (before[0] ?? 0),
    workerMb: (peaks[1] ?? 0) - (before[1] ?? 0),
    seconds: (performance.now() - started) / 1000,
  };
}

export { percentiles };
