import type { NestExpressApplication } from '@nestjs/platform-express';
import { Writable } from 'node:stream';
import { ConfigSchema, type ShepherdConfig } from '@shepherd/config';
import { RedisKeys, StatusStore, createRedis, JobQueues, whenReady } from '@shepherd/queue';
import { createStorage, type JobStorage } from '@shepherd/storage';
import { deleteKeys, REDIS_URL, tempDir, uniqueId, type S3ServerHandle } from '@shepherd/testing';
import { createGateway } from '../src/gateway';
import type { Redis } from 'ioredis';

export type StorageKind = 'filesystem' | 's3-bucket-per-job' | 's3-single-bucket';

export interface Harness {
  url: string;
  config: ShepherdConfig;
  storage: JobStorage;
  redis: Redis;
  /** The gateway's key names (its prefix). */
  keys: RedisKeys;
  statuses: StatusStore;
  queues: JobQueues;
  app: NestExpressApplication;
  close(): Promise<void>;
}

export function storageSection(kind: StorageKind, s3?: S3ServerHandle): Record<string, unknown> {
  if (kind === 'filesystem') return { backend: 'filesystem', root: tempDir('shepherd-fs') };
  if (!s3) throw new Error('an S3 server is needed');
  return {
    backend: 's3',
    url: s3.url,
    access_key: s3.accessKey,
    secret_key: s3.secretKey,
    layout: kind === 's3-single-bucket' ? 'single-bucket' : 'bucket-per-job',
    bucket: uniqueId('bucket'),
  };
}

/** A gateway on a free port with its own Redis key prefix, plus direct handles on what it uses. */
export async function startGateway(raw: Record<string, unknown>): Promise<Harness> {
  const prefix = uniqueId('test');
  const config = ConfigSchema.parse({
    redis: { url: REDIS_URL, prefix },
    sheep: { sheep_a: { type: 'bare', port: 19001, working_directory: '.' }, sheep_b: { type: 'docker', port: 19002 } },
    ...raw,
  });
  const silent = new Writable({ write: (_chunk, _enc, done) => done() });
  const app = await createGateway(config, { logDestination: silent });
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  const storage = createStorage(config.storage);
  const redis = createRedis(config.redis.url, 'producer');
  await whenReady(redis, 5000);
  const keys = new RedisKeys(config.redis.prefix);
  const queues = new JobQueues(redis, keys);
  return {
    url: `http://127.0.0.1:${address.port}`,
    config,
    storage,
    redis,
    keys,
    statuses: new StatusStore(redis, storage, keys),
    queues,
    app,
    async close() {
      await app.close();
      await queues.close();
      await storage.close();
      redis.disconnect();
      await deleteKeys(`${prefix}:`, config.redis.url);
    },
  };
}

export async function postJson(url: string, body: unknown): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export const model = { name: 'echo', version: 'v1' };
