import type { Redis } from 'ioredis';
import {
  canTransition,
  FINAL_STATES,
  isFinished,
  JobStatusSchema,
  statesBefore,
  type JobState,
  type JobStatus,
} from '@shepherd/contracts';
import { JobNotFoundError, StorageUnavailableError, type JobStorage } from '@shepherd/storage';
import type { RedisKeys } from './keys';
import { viaRedis } from './redis';

/** How long Redis keeps a status; the record in storage is kept for good. */
export const STATUS_CACHE_SECONDS = 7 * 24 * 3600;

export type TransitionResult = { written: true; durable: boolean } | { written: false; current: JobStatus | null; reason: string };

export type ClaimResult =
  | { kind: 'claimed'; tookOver: boolean }
  /** Another submit of this id holds a live lease. */
  | { kind: 'busy' }
  /** The job exists (queued, running or finished). */
  | { kind: 'exists'; status: JobStatus };

export interface TransitionOptions {
  /** Narrows the states the job may be in (the state machine still applies). */
  from?: readonly JobState[];
  /**
   * When the job's storage is gone (deleted, wiped) or unreachable, record
   * the status in Redis alone instead of failing: a job that cannot run
   * must still say so.
   */
  redisIfNoStorage?: boolean;
}

// Sets the status only if the current one may move to it; returns nothing
// when written, else the current record. KEYS: status, [lease, pending set].
const TRANSITION = `
local cur = redis.call('GET', KEYS[1])
local refused = false
if cur then
  local ok, decoded = pcall(cjson.decode, cur)
  local state = ok and type(decoded) == 'table' and decoded['status'] or ''
  if not string.find(ARGV[2], ',' .. tostring(state) .. ',', 1, true) then refused = true end
end
if #KEYS >= 3 then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[6])
  redis.call('HDEL', KEYS[4], ARGV[6])
end
if refused then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return false
`;

// KEYS: status, lease, pending set, pending queues. ARGV: accepted json,
// token, lease ms, now ms, job id, ttl s, queue name.
const CLAIM = `
local cur = redis.call('GET', KEYS[1])
local took = 0
if cur then
  local ok, decoded = pcall(cjson.decode, cur)
  if not ok or type(decoded) ~= 'table' or decoded['status'] ~= 'accepted' then return {'exists', cur} end
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'busy', cur} end
  took = 1
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[6])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[5], ARGV[7])
return {'claimed', tostring(took)}
`;

// KEYS: lease. ARGV: token, lease ms. 1 when the lease is still ours.
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`;

// Gives back a claim that never became a job, unless another submit holds
// its lease now. KEYS: status, lease, pending set, pending queues. ARGV:
// token ('' = only while no lease is held: the reconciler), job id.
const RELEASE = `
local lease = redis.call('GET', KEYS[2])
if lease and lease ~= ARGV[1] then return 0 end
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, decoded = pcall(cjson.decode, cur)
  if ok and type(decoded) == 'table' and decoded['status'] == 'accepted' then redis.call('DEL', KEYS[1]) end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
return 1
`;

/**
 * Job status: durable in storage (`job_status.json`), cached in Redis for
 * fast reads, each change announced on a pub/sub channel for waiters.
 * Reads fall back to storage, so a Redis flush loses nothing. Every write
 * follows the job state machine (`@shepherd/contracts` job-life), checked
 * before the storage write and again atomically in Redis.
 */
export class StatusStore {
  constructor(
    private readonly redis: Redis,
    private readonly storage: JobStorage,
    private readonly keys: RedisKeys,
  ) {}

  async read(jobId: string): Promise<JobStatus | null> {
    const cached = await viaRedis(() => this.redis.get(this.keys.status(jobId)));
    if (cached !== null) return JobStatusSchema.parse(JSON.parse(cached));
    const stored = await this.storage.readStatus(jobId);
    if (stored) await this.cache(jobId, stored);
    return stored;
  }

  /**
   * Moves the job to `next` if its current state allows it: storage first
   * (the durable record), then Redis, where the same check is made again
   * atomically so two racing writers leave one outcome. A refused
   * transition writes nothing and says why.
   */
  async transition(jobId: string, next: JobStatus, options: TransitionOptions = {}): Promise<TransitionResult> {
    const current = await this.read(jobId).catch((error: unknown) => {
      if (options.redisIfNoStorage && storageLost(error)) return null;
      throw error;
    });
    // The submitting token sticks to the job whoever writes next.
    if (current?.submitted_by && !next.submitted_by) next = { ...next, submitted_by: current.submitted_by };
    const refusal = this.refusal(current, next.status, options.from);
    if (refusal) return { written: false, current, reason: refusal };
    let durable = true;
    try {
      await this.storage.writeStatus(jobId, next);
    } catch (error) {
      if (!(options.redisIfNoStorage && storageLost(error))) throw error;
      durable = false;
    }
    const raced = await this.cas(jobId, next, options.from);
    if (raced === null) {
      this.leftWaiting(jobId, next);
      await this.indexFinished(jobId, next);
      return { written: true, durable };
    }
    // Another writer moved the job between the check and here: its record wins.
    const winner = JobStatusSchema.parse(JSON.parse(raced));
    if (durable) await this.storage.writeStatus(jobId, winner).catch(() => undefined);
    return { written: false, current: winner, reason: `the job became ${winner.status} meanwhile` };
  }

  /** A checked write that throws when refused: for tests and callers that expect no refusal. */
  async write(jobId: string, status: JobStatus): Promise<void> {
    const result = await this.transition(jobId, status);
    if (!result.written) throw new Error(`status of ${jobId}: ${result.reason}`);
  }

  /**
   * Claims `jobId` for a submit: records `accepted` and a lease that the
   * submit renews while it works. A claim whose lease lapsed (its gateway
   * died) is taken over; a live one answers `busy`.
   */
  async claim(jobId: string, accepted: JobStatus, token: string, leaseMs: number, queue: string): Promise<ClaimResult> {
    const reply = (await viaRedis(() =>
      this.redis.eval(
        CLAIM,
        4,
        this.keys.status(jobId),
        this.keys.submitLease(jobId),
        this.keys.pendingSubmits,
        this.keys.pendingQueues,
        JSON.stringify(accepted),
        token,
        leaseMs,
        Date.now(),
        jobId,
        STATUS_CACHE_SECONDS,
        queue,
      ),
    )) as [string, string];
    const [kind, value] = reply;
    if (kind === 'busy') return { kind: 'busy' };
    if (kind === 'exists') return { kind: 'exists', status: JobStatusSchema.parse(JSON.parse(value)) };
    return { kind: 'claimed', tookOver: value === '1' };
  }

  /** Keeps a claim's lease alive; false when it was lost. */
  async renewClaim(jobId: string, token: string, leaseMs: number): Promise<boolean> {
    const kept = await viaRedis(() => this.redis.eval(RENEW, 1, this.keys.submitLease(jobId), token, leaseMs));
    return kept === 1;
  }

  /** Gives back a claim that did not become a job (`token` '': only a lapsed one, for the reconciler). False when another submit holds it. */
  async releaseClaim(jobId: string, token: string): Promise<boolean> {
    const released = await viaRedis(() =>
      this.redis.eval(
        RELEASE,
        4,
        this.keys.status(jobId),
        this.keys.submitLease(jobId),
        this.keys.pendingSubmits,
        this.keys.pendingQueues,
        token,
        jobId,
      ),
    );
    return released === 1;
  }

  /**
   * The submit's commit: the job is on its queue, so `accepted` becomes
   * `queued` (unless a worker already moved it on) and the claim is closed.
   */
  async commitClaim(jobId: string, queued: JobStatus): Promise<TransitionResult> {
    const raced = await this.cas(jobId, queued, ['accepted'], true);
    if (raced === null) return { written: true, durable: true };
    const current = JobStatusSchema.parse(JSON.parse(raced));
    return { written: false, current, reason: `the job is ${current.status} already` };
  }

  /** Claims older than `olderThanMs` that are still open: submits that may have died. */
  async openClaims(olderThanMs: number, limit = 100): Promise<Array<{ jobId: string; queue: string | null; leased: boolean }>> {
    const ids = await viaRedis(() =>
      this.redis.zrangebyscore(this.keys.pendingSubmits, '-inf', Date.now() - olderThanMs, 'LIMIT', 0, limit),
    );
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    pipeline.hmget(this.keys.pendingQueues, ...ids);
    for (const id of ids) pipeline.exists(this.keys.submitLease(id));
    const replies = (await viaRedis(() => pipeline.exec())) ?? [];
    const queues = (replies[0]?.[1] as Array<string | null>) ?? [];
    return ids.map((jobId, index) => ({ jobId, queue: queues[index] ?? null, leased: replies[index + 1]?.[1] === 1 }));
  }

  /** A job that runs or ended no longer counts against its token's waiting limit; a lost removal is pruned later. */
  private leftWaiting(jobId: string, status: JobStatus): void {
    if (!status.submitted_by || status.status === 'accepted' || status.status === 'queued') return;
    this.redis.zrem(this.keys.waitingJobs(status.submitted_by), jobId).catch(() => undefined);
  }

  /** A finished job goes in its state's index, where retention finds it. */
  private async indexFinished(jobId: string, status: JobStatus): Promise<void> {
    if (!isFinished(status)) return;
    const at = Date.parse(status.finished_at ?? '') || Date.now();
    await viaRedis(() => this.redis.zadd(this.keys.finishedIndex(status.status), at, jobId)).catch(() => undefined);
  }

  /** Forgets a job entirely in Redis: its status, and the indexes (retention, DELETE). */
  async drop(jobId: string): Promise<void> {
    const multi = this.redis.multi().del(this.keys.status(jobId)).zrem(this.keys.jobIndex, jobId);
    for (const state of FINAL_STATES) multi.zrem(this.keys.finishedIndex(state), jobId);
    await viaRedis(() => multi.exec());
  }

  /** Puts a record read from storage back into the cache (no announcement). */
  async cache(jobId: string, status: JobStatus): Promise<void> {
    await viaRedis(() => this.redis.set(this.keys.status(jobId), JSON.stringify(status), 'EX', STATUS_CACHE_SECONDS));
  }

  /** Drops the cached status. */
  async forget(jobId: string): Promise<void> {
    await viaRedis(() => this.redis.del(this.keys.status(jobId)));
  }

  private refusal(current: JobStatus | null, to: JobState, from?: readonly JobState[]): string | null {
    const state = current?.status ?? null;
    if (from && state !== null && !from.includes(state)) return `expected the job to be ${from.join(' or ')}, it is ${state}`;
    if (!canTransition(state, to)) return `a ${state} job cannot become ${to}`;
    return null;
  }

  /** null when written; else the record that stood in the way. */
  private async cas(jobId: string, next: JobStatus, from?: readonly JobState[], closeClaim = false): Promise<string | null> {
    const allowed = statesBefore(next.status).filter((state) => !from || from.includes(state));
    const json = JSON.stringify(next);
    const event = `{"jobId":${JSON.stringify(jobId)},"status":${json}}`;
    const keys = closeClaim
      ? [this.keys.status(jobId), this.keys.submitLease(jobId), this.keys.pendingSubmits, this.keys.pendingQueues]
      : [this.keys.status(jobId)];
    const reply = await viaRedis(() =>
      this.redis.eval(TRANSITION, keys.length, ...keys, json, `,${allowed.join(',')},`, STATUS_CACHE_SECONDS, this.keys.statusChannel, event, jobId),
    );
    return typeof reply === 'string' ? reply : null;
  }
}

function storageLost(error: unknown): boolean {
  return error instanceof JobNotFoundError || error instanceof StorageUnavailableError;
}
