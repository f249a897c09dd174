import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { loggedProcesses } from './logged-processes';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import yaml from 'js-yaml';
import { freePort, tempDir, waitFor } from '@shepherd/testing';
import { getJson, pool, submit } from './chaos-clients';
import { GATEWAY_CLI, MODELS, RUNNER_CLI, WORKER_MAIN } from './harness';

const NODES = 6;

/**
 * Redis Cluster on real processes: three masters and three replicas, the
 * gateway and two workers given seed nodes. Jobs of two models run (each
 * model queue on its own hash slot), the listing and a cancel work; then
 * the master holding one model queue's slot is SIGKILLed while jobs flow,
 * its replica takes over, and every accepted job still ends done.
 */
describe('Redis Cluster', () => {
  const dir = tempDir('shepherd-cluster');
  const processes = loggedProcesses(dir);
  const start = processes.start;
  const nodes = new Map<number, ChildProcess>();
  const ports: Record<string, number> = {};
  let redisPorts: number[] = [];
  let url = '';
  /** Stops the clients of a test that failed, so the run ends. */
  const halt = new AbortController();


  /** One command to one node; null when it does not answer. */
  async function ask(port: number, ...args: string[]): Promise<unknown> {
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await client.connect();
      return await client.call(args[0] ?? '', ...args.slice(1));
    } catch {
      return null;
    } finally {
      client.disconnect();
    }
  }

  /** The port of the master that serves `slot`, as `port` sees the cluster. */
  async function masterOf(slot: number, port: number): Promise<number | null> {
    const text = (await ask(port, 'CLUSTER', 'NODES')) as string | null;
    for (const line of text?.split('\n') ?? []) {
      const [, address = '', flags = '', , , , , link, ...ranges] = line.split(' ');
      if (!flags.includes('master') || flags.includes('fail') || link !== 'connected') continue;
      for (const range of ranges) {
        const [from = NaN, to = from] = range.split('-').map(Number);
        if (slot >= from && slot <= to) return Number(address.split('@')[0]?.split(':')[1]);
      }
    }
    return null;
  }

  const clusterOk = async (port: number) => String((await ask(port, 'CLUSTER', 'INFO')) ?? '').includes('cluster_state:ok');

  beforeAll(async () => {
    for (const name of ['gateway', 'runner1', 'runner2']) ports[name] = await freePort();
    redisPorts = [];
    for (let i = 0; i < NODES; i++) {
      const port = await freePort();
      const bus = await freePort(); // set, not port + 10000, which may be taken or past 65535
      redisPorts.push(port);
      mkdirSync(join(dir, String(port)), { recursive: true });
      nodes.set(
        port,
        start(`redis-${port}`, 'redis-server', [
          '--port', String(port), '--cluster-port', String(bus), '--bind', '127.0.0.1', '--save', '',
          '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000',
          '--appendonly', 'yes', '--dir', join(dir, String(port)), '--repl-diskless-sync-delay', '0',
        ]),
      );
    }
    for (const port of redisPorts) await waitFor(async () => (await ask(port, 'PING')) === 'PONG', 10_000, `redis on ${port}`);
    const create = start('cluster-create', 'redis-cli', ['--cluster', 'create', ...redisPorts.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes']);
    const code = await new Promise<number | null>((resolve) => create.once('exit', resolve));
    expect(code).toBe(0);
    for (const port of redisPorts) await waitFor(() => clusterOk(port), 20_000, `cluster_state:ok on ${port}`);
    // A replica that never synced may not take over: wait for all three.
    const synced = async () => {
      const infos = await Promise.all(redisPorts.map((port) => ask(port, 'INFO', 'replication')));
      return infos.filter((info) => String(info).includes('master_link_status:up')).length === NODES / 2;
    };
    await waitFor(synced, 20_000, 'the replicas to sync');

    const configPath = join(dir, 'shepherd.yml');
    const sheep = (port: number) => ({ type: 'bare', port, working_directory: MODELS, command: [process.execPath, RUNNER_CLI, '-p', '{port}', '{config_path}'] });
    writeFileSync(
      configPath,
      yaml.dump({
        data_root: join(dir, 'data'),
        storage: { backend: 'filesystem', root: join(dir, 'storage') },
        redis: { url: 'redis://unused', prefix: 'cluster', cluster: redisPorts.slice(0, 3).map((p) => `127.0.0.1:${p}`) },
        gateway: { host: '127.0.0.1', port: ports.gateway, submit_lease: '2s', reconcile_interval: '1s' },
        worker: { heartbeat: '500ms', lock_duration: '3s', poll_interval: '200ms', stop_timeout: '1s', max_attempts: 10, hand_back_delay: '200ms' },
        sheep: { s1: sheep(ports.runner1!), s2: sheep(ports.runner2!) },
      }),
    );
    url = `http://127.0.0.1:${ports.gateway}`;
    start('gateway', process.execPath, [GATEWAY_CLI, '-c', configPath]);
    start('worker-s1', process.execPath, [WORKER_MAIN, '-c', configPath, '--sheep', 's1']);
    start('worker-s2', process.execPath, [WORKER_MAIN, '-c', configPath, '--sheep', 's2']);
    await waitFor(async () => (await fetch(`${url}/health`).catch(() => null))?.status === 200, 20_000, 'the gateway');
  }, 60_000);

  afterAll(async () => {
    halt.abort();
    await processes.killAll();
  });

  type Job = { jobId: string; version: string; payload: string };
  const jobsOf = (tag: string, count: number, sleepMs: number): Job[] =>
    Array.from({ length: count }, (_, n) => ({ jobId: `${tag}-${n}`, version: n % 2 ? 'v2' : 'v1', payload: JSON.stringify({ n, nonce: Math.random(), sleep_ms: sleepMs }) }));

  async function submitAll(jobs: Job[], accepted: Job[], onSubmitted?: () => void): Promise<void> {
    await pool(
      jobs,
      4,
      async (job) => {
        const outcome = await submit(url, { job_id: job.jobId, model: { name: 'echo', version: job.version }, payload: job.payload }, 60_000, halt.signal);
        onSubmitted?.();
        if (outcome.kind === 'accepted') accepted.push(job);
      },
      halt.signal,
    );
  }

  /** Every job ends done, with the output of its own input and model version. */
  async function expectDone(jobs: Job[], within: number): Promise<void> {
    const deadline = Date.now() + within;
    for (const job of jobs) {
      let status: string | undefined;
      for (;;) {
        status = ((await getJson(`${url}/jobs/${job.jobId}/wait_ready?timeout=10`, deadline, halt.signal))?.json as { status?: string } | undefined)?.status;
        if (status === 'done' || Date.now() > deadline || halt.signal.aborted) break;
      }
      expect({ jobId: job.jobId, status }).toEqual({ jobId: job.jobId, status: 'done' });
      const result = (await getJson(`${url}/jobs/${job.jobId}/result`, deadline))?.json as { result?: unknown; model?: { version?: string } };
      expect({ jobId: job.jobId, result: result?.result, version: result?.model?.version }).toEqual({ jobId: job.jobId, result: JSON.parse(job.payload), version: job.version });
    }
  }

  it('runs jobs of two models, lists them and cancels one', async () => {
    const jobs = jobsOf('first', 20, 10);
    const accepted: Job[] = [];
    await submitAll(jobs, accepted);
    expect(accepted.length).toBe(jobs.length);
    await expectDone(accepted, 60_000);

    const listed = (await getJson(`${url}/jobs?limit=100`, Date.now() + 10_000))?.json as { jobs?: Array<{ job_id: string; status: string }> };
    const ids = new Set(listed.jobs?.filter((job) => job.status === 'done').map((job) => job.job_id));
    for (const job of jobs) expect(ids.has(job.jobId)).toBe(true);

    // A running job: the cancel reaches its worker over pub/sub.
    const long = { job_id: 'long-1', model: { name: 'echo', version: 'v1' }, payload: JSON.stringify({ sleep_ms: 20_000 }) };
    expect((await submit(url, long)).kind).toBe('accepted');
    await waitFor(async () => ((await getJson(`${url}/jobs/long-1/status`, Date.now() + 5000))?.json as { status?: string })?.status === 'processing', 15_000, 'the long job to run');
    const cancel = await fetch(`${url}/jobs/long-1/cancel`, { method: 'POST' });
    expect(cancel.status).toBe(200);
    const after = (await getJson(`${url}/jobs/long-1/wait_ready?timeout=10`, Date.now() + 15_000))?.json as { status?: string };
    expect(after.status).toBe('cancelled');
  }, 120_000);

  it('keeps every accepted job through the failover of a queue slot’s master', async () => {
    const slot = Number(await ask(redisPorts[0]!, 'CLUSTER', 'KEYSLOT', '{model.echo@v1}'));
    const victim = await masterOf(slot, redisPorts[0]!);
    expect(victim).not.toBeNull();
    const survivor = redisPorts.find((port) => port !== victim)!;

    const jobs = jobsOf('failover', 60, 30);
    const accepted: Job[] = [];
    let submitted = 0;
    const flow = submitAll(jobs, accepted, () => (submitted += 1));
    flow.catch(() => undefined); // awaited below; a failure before that halts it in afterAll
    await waitFor(() => submitted >= 20, 30_000, 'jobs to flow');
    const killedAt = Date.now();
    nodes.get(victim!)!.kill('SIGKILL');
    await waitFor(async () => {
      const owner = await masterOf(slot, survivor);
      return owner !== null && owner !== victim && (await clusterOk(survivor));
    }, 30_000, 'the replica to take over the slot');
    console.log(`failover: master ${victim} (slot ${slot} of {model.echo@v1}) killed → replica serving it in ${Date.now() - killedAt} ms`);
    await flow;
    expect(accepted.length).toBe(jobs.length);
    await expectDone(accepted, 90_000);
    console.log(`cluster: accepted ${accepted.length}, all done`);
  }, 180_000);
});
