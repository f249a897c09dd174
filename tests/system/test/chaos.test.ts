import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '@shepherd/testing';
import { getJson, pool, seededRandom, submit, type SubmitOutcome } from './chaos-clients';
import { startChaosStack, type ChaosStack } from './chaos-stack';

// N jobs from clients that retry, while every part of Shepherd is killed at
// random moments: workers and runners (SIGKILL), Redis (SIGKILL, AOF brings
// it back) and the gateway (SIGTERM, then SIGKILL). Every job the gateway
// accepted must end done with its own output.
//   CHAOS_JOBS=N (default 300; CHAOS_FULL=1 means 1,000), CHAOS_SEED=S replays a schedule,
//   CHAOS_KEEP=1 keeps the temp dir (logs of every process) even when the test passes.
const JOBS = Number(process.env.CHAOS_JOBS ?? (process.env.CHAOS_FULL ? 1000 : 300));
const SEED = Number(process.env.CHAOS_SEED ?? 20261125);
const CLIENTS = 10;
/** Each job sleeps this long in its runner, so a runner kill often lands mid-job. */
const JOB_MS = 60;
/** Submissions and chaos spread over this window. */
const WINDOW_MS = Math.max(30_000, JOBS * 60);

type Action = 'worker' | 'runner' | 'redis' | 'gateway-term' | 'gateway-kill';
const PLAN: Record<Action, number> = { worker: 6, runner: 6, redis: 1, 'gateway-term': 1, 'gateway-kill': 1 };

interface Job {
  id: string;
  payload: string;
  outcome?: SubmitOutcome;
  status?: string;
  outputOk?: boolean;
  problem?: string;
}

let stack: ChaosStack | undefined;
let dir: string;
let passed = false;
/** Stops the clients and the chaos when the test ends early (a timeout), so nothing outlives it. */
const halt = new AbortController();
setMaxListeners(100, halt.signal); // every client lane and the chaos loop wait on it
/** A sleep that ends early when the test is halted. */
const pause = (ms: number) => sleep(ms, undefined, { signal: halt.signal }).catch(() => undefined);

beforeAll(async () => {
  dir = tempDir('shepherd-chaos');
  stack = await startChaosStack({ dir, sheepCount: 2 });
}, 60_000);

afterAll(async () => {
  halt.abort();
  await stack?.close();
  if (passed && !process.env.CHAOS_KEEP) rmSync(dir, { recursive: true, force: true });
  else process.stdout.write(`chaos: logs of every process under ${dir}/logs\n`);
});

/** Runs the plan in a seeded random order at seeded random times inside the window, one action at a time. */
async function chaos(s: ChaosStack, random: () => number, started: number): Promise<Record<Action, number>> {
  const actions = (Object.entries(PLAN) as [Action, number][]).flatMap(([action, count]) => Array<Action>(count).fill(action));
  for (let i = actions.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [actions[i], actions[j]] = [actions[j] as Action, actions[i] as Action];
  }
  const times = actions.map(() => WINDOW_MS * (0.05 + 0.8 * random())).sort((a, b) => a - b);
  const done: Record<Action, number> = { worker: 0, runner: 0, redis: 0, 'gateway-term': 0, 'gateway-kill': 0 };
  for (const [i, action] of actions.entries()) {
    if (halt.signal.aborted) break;
    await pause(Math.max(0, started + (times[i] as number) - Date.now()));
    const sheepId = s.sheepIds[Math.floor(random() * s.sheepIds.length)] as string;
    switch (action) {
      case 'worker':
        await s.killWorker(sheepId);
        await pause(200 + random() * 800);
        s.startWorker(sheepId);
        done.worker += 1;
        break;
      case 'runner': {
        // The runner starts with the worker's first job: give a fresh worker a moment.
        const until = Date.now() + 5000;
        while (!halt.signal.aborted && !s.killRunner(sheepId) && Date.now() < until) await pause(50);
        if (Date.now() < until) done.runner += 1;
        break;
      }
      case 'redis':
        await s.killRedis();
        await pause(1000);
        await s.startRedis();
        done.redis += 1;
        break;
      case 'gateway-term':
      case 'gateway-kill':
        await s.stopGateway(action === 'gateway-term' ? 'SIGTERM' : 'SIGKILL');
        await s.startGateway();
        done[action] += 1;
        break;
    }
  }
  return done;
}

async function submitAll(s: ChaosStack, jobs: Job[], started: number): Promise<void> {
  // Spread over most of the window so jobs flow through every kill.
  const spacing = (WINDOW_MS * 0.85) / jobs.length;
  await pool(jobs, CLIENTS, async (job, i) => {
    await pause(Math.max(0, started + i * spacing - Date.now()));
    job.outcome = await submit(s.url, { job_id: job.id, model: { name: 'echo', version: 'v1' }, payload: job.payload }, 60_000, halt.signal);
  }, halt.signal);
}

/** Polls the accepted jobs until each is done or failed, or the deadline passes. */
async function awaitEnds(s: ChaosStack, jobs: Job[], deadline: number): Promise<void> {
  let pending = jobs;
  while (pending.length > 0 && Date.now() < deadline && !halt.signal.aborted) {
    await pool(pending, CLIENTS, async (job) => {
      const answer = await getJson(`${s.url}/jobs/${job.id}/status`, Math.min(deadline, Date.now() + 5000), halt.signal);
      if (answer?.status === 200) {
        const status = answer.json as { status: string; error_details?: { message?: string } };
        job.status = status.status;
        if (status.error_details?.message) job.problem = status.error_details.message;
      } else job.status = answer ? `HTTP ${answer.status}` : 'unreachable';
    }, halt.signal);
    pending = pending.filter((job) => job.status !== 'done' && job.status !== 'failed');
    if (pending.length > 0) await pause(500);
  }
}

/** The echo runner answers `{"result": <input>, ...}`: the input must come back byte for byte. */
async function checkOutputs(s: ChaosStack, jobs: Job[]): Promise<void> {
  await pool(jobs, CLIENTS, async (job) => {
    const answer = await getJson(`${s.url}/jobs/${job.id}/result`, Date.now() + 30_000, halt.signal);
    const output = answer?.json as { result?: unknown } | undefined;
    job.outputOk = answer?.status === 200 && JSON.stringify(output?.result) === job.payload;
    if (!job.outputOk) job.problem = `result ${answer?.status}: ${JSON.stringify(answer?.json).slice(0, 200)}`;
  });
}

function executionsPerJob(s: ChaosStack): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of readFileSync(s.executionsLog, 'utf8').split('\n')) {
    const jobId = line.split(' ')[0];
    if (jobId) counts.set(jobId, (counts.get(jobId) ?? 0) + 1);
  }
  return counts;
}

describe('chaos', () => {
  it(`${JOBS} jobs through killed workers, runners, Redis and gateways: every accepted job ends done with its own output`, async () => {
    const s = stack as ChaosStack;
    const random = seededRandom(SEED);
    const run = randomBytes(4).toString('hex');
    const jobs: Job[] = Array.from({ length: JOBS }, (_, n) => ({
      id: `chaos-${run}-${n}`,
      payload: JSON.stringify({ n, nonce: randomBytes(8).toString('hex'), sleep_ms: JOB_MS }),
    }));
    const started = Date.now();
    const [, actions] = await Promise.all([submitAll(s, jobs, started), chaos(s, random, started)]);
    const accepted = jobs.filter((job) => job.outcome?.kind === 'accepted');
    await awaitEnds(s, accepted, Date.now() + 60_000 + JOBS * 50);
    const done = accepted.filter((job) => job.status === 'done');
    await checkOutputs(s, done);

    const executions = executionsPerJob(s);
    const runs = accepted.map((job) => executions.get(job.id) ?? 0);
    const failed = accepted.filter((job) => job.status === 'failed');
    const unfinished = accepted.filter((job) => job.status !== 'done' && job.status !== 'failed');
    const wrong = done.filter((job) => !job.outputOk);
    const neverAccepted = jobs.filter((job) => job.outcome?.kind === 'never-accepted');
    const rejected = jobs.filter((job) => job.outcome?.kind === 'rejected');
    const ranUnaccepted = jobs.filter((job) => job.outcome?.kind !== 'accepted' && executions.has(job.id));
    process.stdout.write(
      `chaos: accepted ${accepted.length}, done ${done.length}, failed ${failed.length}, never finished ${unfinished.length}, ` +
        `executions per job max ${Math.max(0, ...runs)} (jobs run more than once: ${runs.filter((n) => n > 1).length})\n` +
        `chaos: of ${JOBS} submitted, never accepted ${neverAccepted.length}, rejected ${rejected.length}, wrong output ${wrong.length}, ` +
        `not accepted but ran ${ranUnaccepted.length}; done jobs never seen by a runner ${done.filter((job) => !executions.has(job.id)).length}; ` +
        `actions ${JSON.stringify(actions)}; unexpected exits ${JSON.stringify(s.unexpectedExits)}; seed ${SEED}; ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
    );
    const sample = (list: Job[]) => list.slice(0, 5).map((job) => `${job.id}: ${job.status ?? ''} ${job.problem ?? ''} ${JSON.stringify(job.outcome)}`);
    expect({
      failed: sample(failed),
      neverFinished: sample(unfinished),
      wrongOutput: sample(wrong),
      neverAccepted: sample(neverAccepted),
      rejected: sample(rejected),
    }).toEqual({ failed: [], neverFinished: [], wrongOutput: [], neverAccepted: [], rejected: [] });
    passed = true;
  }, 600_000);
});
