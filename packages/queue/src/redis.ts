import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

/** A connection to one Redis (plain or through Sentinel) or to a Redis Cluster: the same commands either way. */
export type RedisClient = Redis | Cluster;

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
 * a reconnect. With `cluster` seed nodes it is an ioredis Cluster that
 * follows the slots (and their failovers) itself.
 */
export function createRedis(target: string, role: RedisRole): Redis;
export function createRedis(target: string | RedisTarget, role: RedisRole): RedisClient;
export function createRedis(target: string | RedisTarget, role: RedisRole): RedisClient {
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
  if (typeof target !== 'string' && target.cluster?.length) return createCluster(target, role, options);
  const redis =
    typeof target === 'string' || !target.sentinels
      ? new Redis(typeof target === 'string' ? target : target.url, options)
      : new Redis({ ...options, ...sentinelOptions(target) });
  // Connection errors surface on each command; without a listener ioredis
  // would also print every reconnect failure as an unhandled error.
  redis.on('error', () => undefined);
  return redis;
}

export type RedisRole = 'producer' | 'worker' | 'subscriber';

/** Where Redis is: a URL, or the `redis` config section (Sentinel when it lists sentinels, a Cluster when it lists cluster nodes). */
export interface RedisTarget {
  url: string;
  sentinels?: string[];
  cluster?: string[];
  name?: string;
  password?: string;
  sentinel_password?: string;
}

/**
 * The seed nodes are enough: ioredis learns the other nodes and the slots
 * from them, and again after a failover (MOVED, CLUSTERDOWN and a lost node
 * are retried after a pause). A producer still fails fast (no offline
 * queue, few redirections: the client hears 503 and retries); a worker and
 * a subscriber ride out a failover of several seconds.
 */
function createCluster(target: RedisTarget, role: RedisRole, options: RedisOptions): Cluster {
  const { retryStrategy, enableOfflineQueue, ...nodeOptions } = options;
  const patient = role !== 'producer';
  const clusterOptions: ClusterOptions = {
    redisOptions: { ...nodeOptions, ...(target.password ? { password: target.password } : {}) },
    clusterRetryStrategy: retryStrategy,
    enableOfflineQueue: enableOfflineQueue ?? true,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 200,
    maxRedirections: patient ? 100 : 16,
    enableAutoPipelining: true,
  };
  const cluster = new Cluster((target.cluster ?? []).map(hostPort), clusterOptions);
  cluster.on('error', () => undefined); // as for a single connection: surfaced on each command
  cluster.on('node error', () => undefined);
  return cluster;
}

function hostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
}

/**
 * ioredis asks the sentinels for the master and asks again after a
 * failover; a command sent to a demoted master (READONLY) reconnects.
 */
function sentinelOptions(target: RedisTarget): RedisOptions {
  return {
    sentinels: (target.sentinels ?? []).map(hostPort),
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
    error.name === 'ClusterAllFailedError' ||
    /enableOfflineQueue|Connection is closed|Stream isn't writeable|connect ETIMEDOUT|^CLUSTERDOWN|^TRYAGAIN|Too many Cluster redirections|Failed to refresh slots cache|None of startup nodes is available/.test(error.message)
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
export function whenReady(redis: RedisClient, timeoutMs: number): Promise<boolean> {
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
