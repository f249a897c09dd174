import { Redis, type RedisOptions } from 'ioredis';

/** Redis did not answer. The gateway answers 503. */
export class RedisUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RedisUnavailableError';
  }
}

/**
 * `producer`: fails fast while Redis is down (no offline queue, one retry),
 * so an HTTP request gets a 503 instead of hanging; reconnects on its own.
 * `worker`: waits for Redis forever, as BullMQ workers require
 * (`maxRetriesPerRequest: null`). `subscriber`: pub/sub, resubscribes after
 * a reconnect.
 */
export function createRedis(target: string | RedisTarget, role: 'producer' | 'worker' | 'subscriber'): Redis {
  const common: RedisOptions = {
    connectTimeout: 3000,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
    lazyConnect: false,
  };
  const byRole: Record<typeof role, RedisOptions> = {
    producer: { enableOfflineQueue: false, maxRetriesPerRequest: 1 },
    worker: { maxRetriesPerRequest: null, enableReadyCheck: false },
    subscriber: { maxRetriesPerRequest: null, autoResubscribe: true },
  };
  const options = { ...common, ...byRole[role] };
  const redis =
    typeof target === 'string' || !target.sentinels
      ? new Redis(typeof target === 'string' ? target : target.url, options)
      : new Redis({ ...options, ...sentinelOptions(target) });
  // Connection errors surface on each command; without a listener ioredis
  // would also print every reconnect failure as an unhandled error.
  redis.on('error', () => undefined);
  return redis;
}

/** Where Redis is: a URL, or the `redis` config section (Sentinel when it lists sentinels). */
export interface RedisTarget {
  url: string;
  sentinels?: string[];
  name?: string;
  password?: string;
  sentinel_password?: string;
}

/**
 * ioredis asks the sentinels for the master and asks again after a
 * failover; a command sent to a demoted master (READONLY) reconnects.
 */
function sentinelOptions(target: RedisTarget): RedisOptions {
  return {
    sentinels: (target.sentinels ?? []).map((address) => {
      const colon = address.lastIndexOf(':');
      return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
    }),
    name: target.name ?? 'mymaster',
    ...(target.password ? { password: target.password } : {}),
    ...(target.sentinel_password ? { sentinelPassword: target.sentinel_password } : {}),
    sentinelRetryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    reconnectOnError: (error) => error.message.startsWith('READONLY'),
  };
}

const DOWN_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN']);

/** True for the errors ioredis gives while the server is away. */
export function isRedisDownError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  return (
    (code !== undefined && DOWN_CODES.has(code)) ||
    error.name === 'MaxRetriesPerRequestError' ||
    /enableOfflineQueue|Connection is closed|Stream isn't writeable|connect ETIMEDOUT/.test(error.message)
  );
}

/** Runs a Redis call and turns "Redis is away" into RedisUnavailableError. */
export async function viaRedis<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (isRedisDownError(error)) {
      throw new RedisUnavailableError(`Redis is unreachable: ${(error as Error).message}`, { cause: error });
    }
    throw error;
  }
}

/**
 * Resolves once the connection is ready, or after `timeoutMs` either way:
 * a service starts while Redis is down and answers 503 until it returns.
 */
export function whenReady(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ready: boolean) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      resolve(ready);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.once('ready', onReady);
  });
}
