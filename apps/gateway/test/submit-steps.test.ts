import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ConfigSchema } from '@shepherd/config';
import type { Model } from '@shepherd/contracts';
import { RedisKeys } from '@shepherd/queue';
import { createStorage } from '@shepherd/storage';
import {
  deleteKeys,
  REDIS_URL,
  startRedisServer,
  startS3Server,
  tempDir,
  uniqueId,
  waitFor,
  type RedisServerHandle,
  type S3ServerHandle,
} from '@shepherd/testing';
import {
  Cleanup,
  freeze,
  QueueProbe,
  removeDir,
  spawnGateway,
  submitOnce,
  submitWithRetry,
  SUBMIT_STEPS,
  thaw,
  writeGatewayConfig,
  type Answer,
  type GatewayProcess,
  type SubmitBody,
  type SubmitStep,
} from './processes';

// The contract: a gateway crash, or Redis or storage going away, at any step
// of a submit leaves the job either not existing (the retry gets 200) or
// queued and going to run (the retry gets 409); after the client's retries
// the job is on its queue exactly once, with status `queued`.
// The gateways run as real processes with SHEPHERD_TEST_SUBMIT_HOOK, a
// 1 s submit lease and a 500 ms reconcile interval.

jest.setTimeout(90_000);

const BEFORE_THE_QUEUE: readonly SubmitStep[] = ['claimed', 'stored', 'prepared'];
/** Long enough for a lapsed lease (1 s) and several reconcile rounds (500 ms each). */
const RECONCILE_WAIT_MS = 10_000;

const cleanup = new Cleanup();
afterEach(async () => {
  await cleanup.run();
});

interface Setup {
  dir: string;
  prefix: string;
  redisUrl: string;
  storage: Record<string, unknown>;
  configPath: string;
  model: Model;
}

function setup(options: { redisUrl?: string; storage?: Record<string, unknown> } = {}): Setup {
  const dir = tempDir('submit-steps');
  cleanup.add(() => removeDir(dir));
  const prefix = uniqueId('steps');
  const redisUrl = options.redisUrl ?? REDIS_URL;
  if (redisUrl === REDIS_URL) cleanup.add(() => deleteKeys(`${prefix}:`));
  const root = join(dir, 'storage');
  mkdirSync(root);
  const storage = options.storage ?? { backend: 'filesystem', root };
  const configPath = writeGatewayConfig(dir, { redisUrl, prefix, storage });
  return { dir, prefix, redisUrl, storage, configPath, model: { name: uniqueId('m'), version: 'v1' } };
}

function newSubmit(s: Setup, withPayload = true): SubmitBody {
  const jobId = uniqueId('job');
  return withPayload ? { job_id: jobId, model: s.model, payload: `payload of ${jobId}` } : { job_id: jobId, model: s.model };
}

/** Waits for the gateway to die of its own kill hook (bounded: a hook that never fires fails here). */
async function diedOfHook(gw: GatewayProcess): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 10_000)));
  const exit = await Promise.race([gw.exited, timeout]);
  clearTimeout(timer);
  return exit ? String(exit.signal ?? exit.code) : 'still running';
}

/**
 * The end state every case must reach: status `queued` over HTTP and in
 * storage, the job on its model queue exactly once, its input holding what
 * the client sent, and the claim closed (the submit lease key gone).
 */
async function expectQueuedOnce(s: Setup, url: string, jobId: string, input: string, answers: Answer[]): Promise<void> {
  const probe = new QueueProbe(s.redisUrl, s.prefix, s.model);
  const storage = createStorage(ConfigSchema.parse({ storage: s.storage }).storage);
  const redis = new Redis(s.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  const keys = new RedisKeys(s.prefix);
  try {
    const claimOpen = async () =>
      (await redis.exists(keys.submitLease(jobId))) === 1 || (await redis.zscore(keys.pendingSubmits, jobId)) !== null;
    // A claim left by a dead gateway is closed by the reconciler: give it a few rounds.
    await waitFor(async () => !(await claimOpen()), 5_000, 'the claim to close').catch(() => undefined);
    const statusResponse = await fetch(`${url}/jobs/${jobId}/status`);
    const inputResponse = await fetch(`${url}/jobs/${jobId}/input`);
    const queued = await probe.job(jobId);
    const actual = {
      answers,
      httpStatus: statusResponse.status,
      status: ((await statusResponse.json()) as { status?: string }).status,
      durableStatus: (await storage.readStatus(jobId).catch((error: unknown) => ({ status: `error ${String(error)}` })))?.status,
      onQueue: queued !== null && (queued.data as { jobId?: string }).jobId === jobId,
      jobsInQueue: await probe.total(),
      input: inputResponse.status === 200 ? await inputResponse.text() : `HTTP ${inputResponse.status}`,
      claimOpen: await claimOpen(),
    };
    expect(actual).toEqual({
      answers: expect.anything(),
      httpStatus: 200,
      status: 'queued',
      durableStatus: 'queued',
      onQueue: true,
      jobsInQueue: 1,
      input,
      claimOpen: false,
    });
  } finally {
    await probe.close();
    await storage.close();
    redis.disconnect();
  }
}

/** Adds what the gateways logged (level warn and up) to a failure: the lead reads why from there. */
async function withOutput<T>(gateways: GatewayProcess[], run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const logs = [...new Set(gateways)].map((gw, i) => `--- gateway ${i + 1} output (last 3000 chars):\n${gw.output().slice(-3000)}`);
    if (error instanceof Error) error.message += `\n${logs.join('\n')}`;
    throw error;
  }
}

async function statusCode(url: string, jobId: string): Promise<number> {
  return fetch(`${url}/jobs/${jobId}/status`).then(
    (r) => r.status,
    () => 0,
  );
}

async function onQueue(s: Setup, jobId: string): Promise<boolean> {
  const probe = new QueueProbe(s.redisUrl, s.prefix, s.model);
  try {
    return (await probe.job(jobId)) !== null;
  } finally {
    await probe.close();
  }
}

async function upload(url: string, jobId: string, text: string): Promise<void> {
  const response = await fetch(`${url}/jobs/${jobId}/inputs/input`, { method: 'PUT', body: text });
  expect(response.status).toBe(201);
}

describe('a gateway killed at a step of a submit, then the client retries on a new gateway', () => {
  it.each(SUBMIT_STEPS)('killed at %s: the job ends up queued once', async (step) => {
    const s = setup();
    const first = await spawnGateway(s.configPath, { hook: `${step}:kill`, cleanup });
    const body = newSubmit(s);
    const dropped = await submitOnce(first.url, body);
    expect({ answer: dropped.status, exit: await diedOfHook(first) }).toEqual({ answer: 0, exit: 'SIGKILL' });

    // Whether the job reached its queue before the crash decides the answer: 409 if it did, else 200.
    const wasQueued = await onQueue(s, body.job_id);
    const second = await spawnGateway(s.configPath, { port: first.port, cleanup });
    const { final, attempts } = await submitWithRetry(() => second.url, body);
    expect({ wasQueued, retry: final.status }).toEqual({ wasQueued, retry: wasQueued ? 409 : 200 });
    await expectQueuedOnce(s, second.url, body.job_id, body.payload!, [dropped, ...attempts]);
  });

  it('killed at stored with inputs uploaded first: the retry without payload queues it with those inputs', async () => {
    const s = setup();
    const first = await spawnGateway(s.configPath, { hook: 'stored:kill', cleanup });
    const body = newSubmit(s, false);
    await upload(first.url, body.job_id, 'uploaded input');
    const dropped = await submitOnce(first.url, body);
    expect({ answer: dropped.status, exit: await diedOfHook(first) }).toEqual({ answer: 0, exit: 'SIGKILL' });

    const second = await spawnGateway(s.configPath, { port: first.port, cleanup });
    const { final, attempts } = await submitWithRetry(() => second.url, body);
    expect(final.status).toBe(200);
    await expectQueuedOnce(s, second.url, body.job_id, 'uploaded input', [dropped, ...attempts]);
  });
});

describe('a gateway killed at a step of a submit, and nobody retries', () => {
  it.each(BEFORE_THE_QUEUE)('killed at %s: the reconciler releases the id (404), which can then be submitted (200)', async (step) => {
    const s = setup();
    const first = await spawnGateway(s.configPath, { hook: `${step}:kill`, cleanup });
    const body = newSubmit(s);
    const dropped = await submitOnce(first.url, body);
    expect({ answer: dropped.status, exit: await diedOfHook(first) }).toEqual({ answer: 0, exit: 'SIGKILL' });

    const second = await spawnGateway(s.configPath, { port: first.port, cleanup });
    const seen: number[] = [];
    await waitFor(
      async () => {
        const code = await statusCode(second.url, body.job_id);
        if (seen[seen.length - 1] !== code) seen.push(code);
        return code === 404;
      },
      RECONCILE_WAIT_MS,
      'the status to answer 404',
    ).catch((error: Error) => {
      throw new Error(`${error.message}; status answers seen: ${seen.join(' -> ')}`);
    });
    expect(await onQueue(s, body.job_id)).toBe(false);

    const again = await submitOnce(second.url, body);
    expect(again).toEqual({ status: 200, body: { success: true } });
    await expectQueuedOnce(s, second.url, body.job_id, body.payload!, [dropped, again]);
  });

  it('killed at prepared with inputs uploaded first: released with the inputs kept, then submitted without payload (200)', async () => {
    const s = setup();
    const first = await spawnGateway(s.configPath, { hook: 'prepared:kill', cleanup });
    const body = newSubmit(s, false);
    await upload(first.url, body.job_id, 'uploaded input');
    const dropped = await submitOnce(first.url, body);
    expect({ answer: dropped.status, exit: await diedOfHook(first) }).toEqual({ answer: 0, exit: 'SIGKILL' });

    const second = await spawnGateway(s.configPath, { port: first.port, cleanup });
    await waitFor(async () => (await statusCode(second.url, body.job_id)) === 404, RECONCILE_WAIT_MS, 'the status to answer 404');
    const again = await submitOnce(second.url, body);
    expect(again).toEqual({ status: 200, body: { success: true } });
    await expectQueuedOnce(s, second.url, body.job_id, 'uploaded input', [dropped, again]);
  });

  it.each(['added', 'committed'] as const)('killed at %s: the reconciler makes the job queued by itself', async (step) => {
    const s = setup();
    const first = await spawnGateway(s.configPath, { hook: `${step}:kill`, cleanup });
    const body = newSubmit(s);
    const dropped = await submitOnce(first.url, body);
    expect({ answer: dropped.status, exit: await diedOfHook(first) }).toEqual({ answer: 0, exit: 'SIGKILL' });

    const second = await spawnGateway(s.configPath, { port: first.port, cleanup });
    const seen: string[] = [];
    await waitFor(
      async () => {
        const response = await fetch(`${second.url}/jobs/${body.job_id}/status`);
        const shown = response.status === 200 ? String(((await response.json()) as { status?: string }).status) : `HTTP ${response.status}`;
        if (seen[seen.length - 1] !== shown) seen.push(shown);
        return shown === 'queued';
      },
      RECONCILE_WAIT_MS,
      'the status to become queued',
    ).catch((error: Error) => {
      throw new Error(`${error.message}; statuses seen: ${seen.join(' -> ')}`);
    });
    await expectQueuedOnce(s, second.url, body.job_id, body.payload!, [dropped]);
    // And a late retry is told the job exists.
    expect((await submitOnce(second.url, body)).status).toBe(409);
  });
});

/** Pauses a submit at `step`, breaks something, lets it go on; returns its answer. */
async function pauseAndBreak(gw: GatewayProcess, step: SubmitStep, body: SubmitBody, breakIt: () => Promise<void> | void): Promise<Answer> {
  // A submit that has not answered 10 s after the outage is not giving the client a clear error.
  const pending = submitOnce(gw.url, body, 10_000);
  await gw.waitForOutput(new RegExp(`submit paused at ${step}\\b`));
  await breakIt();
  gw.child.kill('SIGUSR2');
  return pending;
}

interface OutageCase {
  step: SubmitStep;
  breakIt(): Promise<void> | void;
  restore(): Promise<void> | void;
  /** The steps after which the submit still needs what went away: its answer must be 503; after the others 200 is as right. */
  needed: readonly SubmitStep[];
}

/**
 * A gateway with `<step>:pause`; at the pause the dependency goes away, the
 * submit goes on and answers; the dependency returns and the client retries.
 * If the gateway exited after the resume signal it is replaced on its port
 * (as a supervisor would), so the end state is still checked; that it
 * exited is reported last.
 */
async function outageCase(s: Setup, c: OutageCase): Promise<void> {
  const gw = await spawnGateway(s.configPath, { hook: `${c.step}:pause`, cleanup });
  const body = newSubmit(s);
  const first = await pauseAndBreak(gw, c.step, body, c.breakIt);
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([gw.exited, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 1500)))]);
  clearTimeout(timer);
  const afterResume = exit ? `exited (${exit.signal ?? exit.code})` : 'running';

  await c.restore();
  const current = gw.running() ? gw : await spawnGateway(s.configPath, { port: gw.port, cleanup });
  const { final } = await withOutput([gw, current], async () => {
    const retried = await submitWithRetry(() => current.url, body);
    await expectQueuedOnce(s, current.url, body.job_id, body.payload!, [first, ...retried.attempts]);
    return retried;
  });

  const allowedFirst = c.needed.includes(c.step) ? [503] : [200, 503];
  // A submit answered 200 committed the job: its retry must be told it exists.
  const allowedFinal = first.status === 200 ? [409] : [200, 409];
  expect({
    first,
    firstAllowed: allowedFirst.includes(first.status),
    final,
    finalAllowed: allowedFinal.includes(final.status),
    gatewayAfterResume: afterResume,
  }).toEqual({ first, firstAllowed: true, final, finalAllowed: true, gatewayAfterResume: 'running' });
}

describe('Redis going away at a step of a submit', () => {
  it.each(SUBMIT_STEPS)('at %s: a clear error, then after Redis returns the retry leaves the job queued once', async (step) => {
    const aofDir = tempDir('submit-steps-redis');
    cleanup.add(() => removeDir(aofDir));
    const redis: RedisServerHandle = await startRedisServer(undefined, { aofDir });
    cleanup.add(() => redis.stop());
    const s = setup({ redisUrl: redis.url });
    await outageCase(s, {
      step,
      breakIt: () => redis.stop(),
      restore: () => redis.start(),
      // Until `added` (the commit point) the job cannot reach its queue without Redis.
      needed: ['claimed', 'stored', 'prepared'],
    });
  });
});

describe('S3 storage going away at a step of a submit', () => {
  it.each(SUBMIT_STEPS)('at %s: a clear error, then after storage returns the retry leaves the job queued once', async (step) => {
    const directory = tempDir('submit-steps-s3');
    cleanup.add(() => removeDir(directory));
    let s3: S3ServerHandle | undefined = await startS3Server({ directory });
    cleanup.add(() => s3?.stop());
    const { port } = s3;
    const s = setup({
      storage: { backend: 's3', url: s3.url, access_key: s3.accessKey, secret_key: s3.secretKey, layout: 'bucket-per-job', bucket: uniqueId('b') },
    });
    await outageCase(s, {
      step,
      breakIt: async () => {
        const running = s3;
        s3 = undefined;
        await running?.stop();
      },
      restore: async () => {
        s3 = await startS3Server({ port, directory });
      },
      // The payload (stored) and the durable record (prepared) need storage; the later steps do not.
      needed: ['claimed', 'stored'],
    });
  });
});

describe('filesystem storage refusing writes at a step of a submit', () => {
  it.each(['claimed', 'stored'] as const)('at %s: 503, then once it takes writes again the retry leaves the job queued once', async (step) => {
    const s = setup();
    const root = String(s.storage.root);
    cleanup.add(() => thaw(root));
    await outageCase(s, { step, breakIt: () => freeze(root), restore: () => thaw(root), needed: ['claimed', 'stored'] });
  });
});

describe('concurrent submits of one new id', () => {
  it('50 at once over two gateways: each answers 200 or 409, at least one 200, and the job is queued once', async () => {
    const s = setup();
    const gateways = [await spawnGateway(s.configPath, { cleanup }), await spawnGateway(s.configPath, { cleanup })];
    const body = newSubmit(s);
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => submitOnce(gateways[i % 2]!.url, body)));
    const byStatus: Record<string, number> = {};
    for (const answer of answers) byStatus[answer.status] = (byStatus[answer.status] ?? 0) + 1;
    const others = answers.filter((a) => a.status !== 200 && a.status !== 409);
    expect({ others: others.slice(0, 3), oks: (byStatus[200] ?? 0) >= 1 }).toEqual({ others: [], oks: true });
    await expectQueuedOnce(s, gateways[0]!.url, body.job_id, body.payload!, answers.slice(0, 3));
  });
});
