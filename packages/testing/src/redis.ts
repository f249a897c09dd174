import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Deletes every key under `prefix` (tests use a unique prefix each). */
export async function deleteKeys(prefix: string, url = REDIS_URL): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true });
  await redis.connect();
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface RedisServerHandle {
  url: string;
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/**
 * A private redis-server on its own port, for tests that stop and restart
 * Redis without disturbing the shared one.
 */
export async function startRedisServer(port?: number, options: { aofDir?: string } = {}): Promise<RedisServerHandle> {
  const chosen = port ?? (await freePort());
  // With aofDir: every write is fsynced to an append-only file there, as the
  // stack's Redis runs, so a killed server comes back with everything it acknowledged.
  const persistence = options.aofDir
    ? ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', options.aofDir, '--maxmemory-policy', 'noeviction']
    : ['--appendonly', 'no'];
  let child: ChildProcess | undefined;
  const handle: RedisServerHandle = {
    url: `redis://127.0.0.1:${chosen}`,
    port: chosen,
    async start() {
      child = spawn('redis-server', ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '', ...persistence], {
        stdio: 'ignore',
      });
      await waitForRedis(handle.url);
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        running.once('exit', () => resolve());
        running.kill('SIGKILL');
      });
    },
  };
  await handle.start();
  return handle;
}

async function waitForRedis(url: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const redis = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    try {
      await redis.connect();
      await redis.ping();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      redis.disconnect();
    }
  }
}
