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

/**
 * Redis Sentinel on real processes: a master, a replica and three
 * sentinels on loopback ports, the gateway and a worker finding the master
 * through them. The master is SIGKILLed while jobs flow; after the failover
 * (and the old master rejoining as a replica) every accepted job ends done.
 */
describe('Redis Sentinel', () => {
  const dir = tempDir('shepherd-sentinel');
  const processes = loggedProcesses(dir);
  const start = processes.start;
  const ports: Record<string, number> = {};
  let master: ChildProcess;
  let url = '';


  function startRedis(name: string, port: number, extra: string[] = []): ChildProcess {
    mkdirSync(join(dir, name), { recursive: true });
    return start(name, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', join(dir, name), ...extra]);
  }

  async function info(port: number, section: string): Promise<string> {
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await client.connect();
      return await client.info(section);
    } catch {
      return '';
    } finally {
      client.disconnect();
    }
  }

  async function masterPort(): Promise<number | null> {
    const client = new Redis({ port: ports.s1, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await client.connect();
      const [, port] = (await client.call('SENTINEL', 'get-master-addr-by-name', 'mymaster')) as [string, string];
      return Number(port);
    } catch {
      return null;
    } finally {
      client.disconnect();
    }
  }

  beforeAll(async () => {
    for (const name of ['master', 'replica', 's1', 's2', 's3', 'gateway', 'runner']) ports[name] = await freePort();
    master = startRedis('master', ports.master!);
    startRedis('replica', ports.replica!, ['--replicaof', '127.0.0.1', String(ports.master)]);
    await waitFor(async () => (await info(ports.replica!, 'replication')).includes('master_link_status:up'), 15_000, 'the replica to sync');
    for (const name of ['s1', 's2', 's3']) {
      const conf = join(dir, `${name}.conf`);
      writeFileSync(
        conf,
        [
          `port ${ports[name]}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor mymaster 127.0.0.1 ${ports.master} 2`,
          'sentinel down-after-milliseconds mymaster 1000',
          'sentinel failover-timeout mymaster 10000',
          'sentinel parallel-syncs mymaster 1',
          '',
        ].join('\n'),
      );
      start(name, 'redis-server', [conf, '--sentinel']);
    }
    await waitFor(async () => (await masterPort()) === ports.master, 15_000, 'the sentinels to see the master');

    const configPath = join(dir, 'shepherd.yml');
    writeFileSync(
      configPath,
      yaml.dump({
        data_root: join(dir, 'data'),
        storage: { backend: 'filesystem', root: join(dir, 'storage') },
        redis: { url: 'redis://unused', prefix: 'sentinel', sentinels: ['s1', 's2', 's3'].map((s) => `127.0.0.1:${ports[s]}`), name: 'mymaster' },
        gateway: { host: '127.0.0.1', port: ports.gateway, submit_lease: '2s', reconcile_interval: '1s' },
        worker: { heartbeat: '500ms', lock_duration: '3s', poll_interval: '200ms', stop_timeout: '1s', max_attempts: 10, hand_back_delay: '200ms' },
        sheep: {
          s1: { type: 'bare', port: ports.runner, working_directory: MODELS, command: [process.execPath, RUNNER_CLI, '-p', '{port}', '{config_path}'] },
        },
      }),
    );
    url = `http://127.0.0.1:${ports.gateway}`;
    start('gateway', process.execPath, [GATEWAY_CLI, '-c', configPath]);
    start('worker', process.execPath, [WORKER_MAIN, '-c', configPath, '--sheep', 's1']);
    await waitFor(async () => (await fetch(`${url}/health`).catch(() => null))?.status === 200, 20_000, 'the gateway');
  }, 60_000);

  afterAll(async () => {
    await processes.killAll();
  });

  it('keeps every accepted job through a failover of the master', async () => {
    const jobs = Array.from({ length: 60 }, (_, n) => ({ jobId: `sentinel-${n}`, payload: JSON.stringify({ n, nonce: Math.random(), sleep_ms: 30 }) }));
    let submitted = 0;
    const accepted: typeof jobs = [];
    const flow = pool(jobs, 4, async (job) => {
      const outcome = await submit(url, { job_id: job.jobId, model: { name: 'echo', version: 'v1' }, payload: job.payload }, 60_000);
      submitted += 1;
      if (outcome.kind === 'accepted') accepted.push(job);
    });
    await waitFor(() => submitted >= 20, 30_000, 'jobs to flow');
    const killedAt = Date.now();
    master.kill('SIGKILL');
    await waitFor(async () => (await masterPort()) === ports.replica, 30_000, 'the sentinels to promote the replica');
    console.log(`failover: master killed → replica promoted in ${Date.now() - killedAt} ms`);
    // The old master comes back and rejoins as a replica (submits need one to acknowledge them).
    master = startRedis('master', ports.master!);
    await flow;
    expect(accepted.length).toBe(jobs.length);

    const deadline = Date.now() + 90_000;
    let done = 0;
    for (const job of accepted) {
      let status: unknown;
      for (;;) {
        status = (await getJson(`${url}/jobs/${job.jobId}/wait_ready?timeout=10`, deadline))?.json;
        if ((status as { status?: string })?.status === 'done' || Date.now() > deadline) break;
      }
      expect({ jobId: job.jobId, status: (status as { status?: string })?.status }).toEqual({ jobId: job.jobId, status: 'done' });
      const result = (await getJson(`${url}/jobs/${job.jobId}/result`, deadline))?.json as { result?: unknown };
      expect(JSON.stringify(result?.result)).toBe(JSON.stringify(JSON.parse(job.payload)));
      done += 1;
    }
    console.log(`sentinel: accepted ${accepted.length}, done ${done}`);
  }, 180_000);
});
