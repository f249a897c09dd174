import { describe, expect, it } from '@jest/globals';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startRedisServer, tempDir, uniqueId, waitFor } from '@shepherd/testing';
import { echo, echoSheep, startStack, useFreePorts } from './harness';

const port = useFreePorts(4);

describe('restarting a part of Shepherd loses no accepted job', () => {
  it('Redis with an append-only file, killed while jobs wait: they all run after it returns', async () => {
    const aofDir = tempDir('redis-aof');
    const redis = await startRedisServer(undefined, { aofDir });
    const stack = await startStack({ redis: { url: redis.url, prefix: uniqueId('aof') }, sheep: { s1: echoSheep(port(0)) } }, { startWorkers: false });
    try {
      const ids = Array.from({ length: 10 }, () => uniqueId('aof'));
      for (const jobId of ids) expect((await stack.submit({ job_id: jobId, model: echo(), payload: '{}' })).status).toBe(200);
      await redis.stop(); // SIGKILL: only what reached the append-only file survives
      await redis.start();
      await waitFor(async () => (await fetch(`${stack.url}/ready`)).status === 200, 15_000, 'the gateway to reconnect');
      stack.startWorker('s1');
      const states = await Promise.all(ids.map(async (jobId) => (await stack.waitReady(jobId)).status));
      expect(states).toEqual(ids.map(() => 'done'));
    } finally {
      await stack.close();
      await redis.stop();
    }
  });

  it('the gateway, stopped and started again while jobs run: every accepted job ends done', async () => {
    const stack = await startStack({ sheep: { s1: echoSheep(port(1)) } });
    try {
      const ids = Array.from({ length: 8 }, () => uniqueId('gw'));
      for (const jobId of ids) await stack.submit({ job_id: jobId, model: echo(), payload: '{"sleep_ms": 100}' });
      await stack.restartGateway();
      const states = await Promise.all(ids.map(async (jobId) => (await stack.waitReady(jobId)).status));
      expect(states).toEqual(ids.map(() => 'done'));
    } finally {
      await stack.close();
    }
  });
});

describe('workers on two machines', () => {
  it('share one gateway, Redis and storage, each with its own data root', async () => {
    const stack = await startStack({ sheep: { here: echoSheep(port(2)), there: echoSheep(port(3)) } }, { startWorkers: false });
    const elsewhere = tempDir('second-machine');
    try {
      stack.startWorker('here');
      stack.startWorker('there', { data_root: elsewhere });
      await waitFor(async () => (await stack.sheepState('here')) && (await stack.sheepState('there')), 20_000, 'both workers');
      const ids = Array.from({ length: 6 }, (_, i) => ({ jobId: uniqueId('two'), sheep: i % 2 ? 'there' : 'here' }));
      for (const { jobId, sheep } of ids) await stack.submit({ job_id: jobId, model: echo(), payload: '{"sleep_ms": 50}', sheep_id: sheep });
      for (const { jobId } of ids) expect(await stack.waitReady(jobId)).toMatchObject({ status: 'done' });
      // The second worker staged its jobs under its own data root (and cleaned up after).
      expect(existsSync(join(elsewhere, 'there'))).toBe(true);
      await waitFor(() => readdirSync(join(elsewhere, 'there')).length === 0, 5000, 'the job dirs to be removed');
      expect(existsSync(join(stack.dir, 'data', 'there'))).toBe(false);
    } finally {
      await stack.close();
    }
  });
});
