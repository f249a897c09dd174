import {
  canTransition,
  STICKY_FIELDS,
  FINAL_STATES,
  isFinished,
  JobStatusSchema,
  statesBefore,
  type JobState,
  type JobStatus,
} from '@shepherd/contracts';
import { JobNotFoundError, StorageUnavailableError, type JobStorage } from '@shepherd/storage';
import type { RedisKeys } from './keys';
import { LuaScript } from './lua-script';
import { viaRedis, type RedisClient } from './redis';

/** How long Redis keeps a status; the record in storage is kept for good. */
export const STATUS_CACHE_SECONDS = 7 * 24 * 3600;

export type TransitionResult =
  /** `status`: the record written (with what it kept from the one before). */
  | { written: true; durable: boolean; status: JobStatus }
  | { written: false; current: JobStatus | null; reason: string };

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
  /**
   * The current record as the caller knows it (what it read or wrote a
   * moment ago): the transition skips its own read. The atomic check in
   * Redis still guards against a change the caller missed.
   */
  known?: JobStatus | null;
  /**
   * False: Redis only, no storage write. For `processing`: storage keeps the
   * records a lost Redis needs (`queued`, so the job is known and runs; the
   * final one, so its end is kept); while a job runs, Redis is its live
   * record, and a Redis that loses it shows the job `queued` until it ends.
   * One storage write less per job (a PUT on S3).
   */
  durable?: boolean;
}

// Sets the status only if the current one may move to it, announces it on
// the status channel and appends it to the job's event stream (what SSE
// clients replay). Returns {1, event id} when written, {0, current} when
// refused. KEYS: status, events, [lease: closes the submit's claim].
// ARGV: json, allowed states ",a,b,", ttl s, channel, job id, max events.
// Every key is the job's (one hash slot); the pending-claim entry is
// removed by a separate command after it.
const TRANSITION = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
local refused = false
if cur then
  local ok, decoded = pcall(cjson.decode, cur)
  local state = ok and type(decoded) == 'table' and decoded['status'] or ''
  if not string.find(ARGV[2], ',' .. tostring(state) .. ',', 1, true) then refused = true end
end
if #KEYS >= 3 then redis.call('DEL', KEYS[3]) end
if refused then return {0, cur} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'type', 'status', 'status', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], '{"jobId":' .. cjson.encode(ARGV[5]) .. ',"id":"' .. id .. '","type":"status","status":' .. ARGV[1] .. '}')
return {1, id}
`);

// Records a runner's progress on a processing job: in its status, on the
// channel and in its event stream. Returns {event id, record}, or false when
// the job is not processing. KEYS: status, events. ARGV: progress, message
// ('' for none), ttl s, channel, job id, max events.
const PROGRESS = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
local ok, status = pcall(cjson.decode, cur)
if not ok or type(status) ~= 'table' or status['status'] ~= 'processing' then return false end
status['progress'] = tonumber(ARGV[1])
if ARGV[2] ~= '' then status['progress_message'] = ARGV[2] else status['progress_message'] = cjson.null end
local json = cjson.encode(status)
redis.call('SET', KEYS[1], json, 'KEEPTTL')
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'type', 'progress', 'status', json)
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], '{"jobId":' .. cjson.encode(ARGV[5]) .. ',"id":"' .. id .. '","type":"progress","status":' .. json .. '}')
return {id, json}
`);

// KEYS: status, lease. ARGV: accepted json, token, lease ms, ttl s.
const CLAIM = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
local took = 0
if cur then
  local ok, decoded = pcall(cjson.decode, cur)
  if not ok or type(decoded) ~= 'table' or decoded['status'] ~= 'accepted' then return {'exists', cur} end
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'busy', cur} end
  took = 1
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return {'claimed', tostring(took)}
`);

// KEYS: lease. ARGV: token, lease ms. 1 when the lease is still ours.
const RENEW = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`);

// Gives back a claim that never became a job, unless another submit holds
// its lease now. KEYS: status, lease. ARGV: token ('' = only while no
// lease is held: the reconciler).
const RELEASE = new LuaScript(`
local lease = redis.call('GET', KEYS[2])
if lease and lease ~= ARGV[1] then return 0 end
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, decoded = pcall(cjson.decode, cur)
  if ok and type(decoded) == 'table' and decoded['status'] == 'accepted' then redis.call('DEL', KEYS[1]) end
end
redis.call('DEL', KEYS[2])
return 1
`);

/**
 * Job status: durable in storage (`job_status.json`), cached in Redis for
 * fast reads, each change announced on a pub/sub channel for waiters.
 * Reads fall back to storage, so a Redis flush loses nothing. Every write
 * follows the job state machine (`@shepherd/contracts` job-life), checked
 * before the storage write and again atomically in Redis.
 */
export class StatusStore {
  private readonly observers: StatusObserver[] = [];

  constructor(
    private readonly redis: RedisClient,
    private readonly storage: JobStorage,
    private readonly keys: RedisKeys,
  ) {}

  /** Called after each change this process writes (webhooks queue their deliveries here). */
  observe(observer: StatusObserver): void {
    this.observers.push(observer);
  }

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
    const current =
      options.known !== undefined
        ? options.known
        : await this.read(jobId).catch((error: unknown) => {
            if (options.redisIfNoStorage && storageLost(error)) return null;
            throw error;
          });
    // What the submit set (token, webhook) sticks to the job whoever writes next.
    next = withSticky(current, next);
    const refusal = this.refusal(current, next.status, options.from);
    if (refusal) return { written: false, current, reason: refusal };
    let durable = options.durable ?? true;
    try {
      if (durable) await this.storage.writeStatus(jobId, next);
    } catch (error) {
      if (!(options.redisIfNoStorage && storageLost(error))) throw error;
      durable = false;
    }
    const raced = await this.cas(jobId, next, options.from);
    if (raced.written) {
      this.leftWaiting(jobId, next);
      await this.indexFinished(jobId, next);
      this.announce(jobId, raced.eventId, 'status', current, next);
      return { written: true, durable, status: next };
    }
    // Another writer moved the job between the check and here: its record wins.
    const winner = JobStatusSchema.parse(JSON.parse(raced.current));
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
   *
   * The reconciler's entry (pending set and queue) is written first, so no
   * claim exists without one; an entry whose job turns out not to be
   * `accepted` is dropped (here, or by the reconciler if this dies).
   */
  async claim(jobId: string, accepted: JobStatus, token: string, leaseMs: number, queue: string): Promise<ClaimResult> {
    const entry = () => Promise.all([this.redis.zadd(this.keys.pendingSubmits, Date.now(), jobId), this.redis.hset(this.keys.pendingQueues, jobId, queue)]);
    const take = () =>
      CLAIM.run(this.redis, [this.keys.status(jobId), this.keys.submitLease(jobId)], [JSON.stringify(accepted), token, leaseMs, STATUS_CACHE_SECONDS]);
    // One connection applies commands in the order sent, so the entry lands
    // first without waiting for its reply; on a cluster the keys may live on
    // other nodes, and the entry is awaited before the claim.
    const reply = await viaRedis(async () => {
      if (!this.keys.cluster) return (await Promise.all([entry(), take()]))[1];
      await entry();
      return take();
    });
    const [kind, value] = reply as [string, string];
    if (kind === 'busy') return { kind: 'busy' };
    if (kind === 'exists') {
      await this.closePending(jobId).catch(() => undefined);
      return { kind: 'exists', status: JobStatusSchema.parse(JSON.parse(value)) };
    }
    return { kind: 'claimed', tookOver: value === '1' };
  }

  /** Drops a claim's reconciler entry; a lost one is dropped by the reconciler (its job is not `accepted`). */
  private async closePending(jobId: string): Promise<void> {
    await viaRedis(() => Promise.all([this.redis.zrem(this.keys.pendingSubmits, jobId), this.redis.hdel(this.keys.pendingQueues, jobId)]));
  }

  /** Keeps a claim's lease alive; false when it was lost. */
  async renewClaim(jobId: string, token: string, leaseMs: number): Promise<boolean> {
    const kept = await viaRedis(() => RENEW.run(this.redis, [this.keys.submitLease(jobId)], [token, leaseMs]));
    return kept === 1;
  }

  /** Gives back a claim that did not become a job (`token` '': only a lapsed one, for the reconciler). False when another submit holds it. */
  async releaseClaim(jobId: string, token: string): Promise<boolean> {
    const released = await viaRedis(() => RELEASE.run(this.redis, [this.keys.status(jobId), this.keys.submitLease(jobId)], [token]));
    if (released !== 1) return false;
    await this.closePending(jobId);
    return true;
  }

  /**
   * The submit's commit: the job is on its queue, so `accepted` becomes
   * `queued` (unless a worker already moved it on) and the claim is closed.
   */
  async commitClaim(jobId: string, queued: JobStatus, options: { complete?: boolean } = {}): Promise<TransitionResult> {
    // The claim's record holds what the submit set (token, webhook): the reconciler's record keeps it.
    // The submit itself builds a complete record (`complete`) and saves the read.
    if (!options.complete) {
      const claimed = await viaRedis(() => this.redis.get(this.keys.status(jobId)));
      if (claimed) queued = withSticky(JobStatusSchema.parse(JSON.parse(claimed)), queued);
    }
    // Written or not, the claim is closed: its job is past `accepted`. Sent
    // behind the script on one connection without waiting for it (on a
    // cluster, after its reply).
    const cas = this.cas(jobId, queued, ['accepted'], true);
    const close = () => this.closePending(jobId).catch(() => undefined);
    const [raced] = this.keys.cluster ? [await cas, await close()] : await Promise.all([cas, close()]);
    if (raced.written) {
      this.announce(jobId, raced.eventId, 'status', null, queued);
      return { written: true, durable: true, status: queued };
    }
    const current = JobStatusSchema.parse(JSON.parse(raced.current));
    return { written: false, current, reason: `the job is ${current.status} already` };
  }

  /**
   * Claims older than `olderThanMs` that are still open: submits that may
   * have died. An entry whose job is not `accepted` (its claim was refused,
   * or committed and the entry's removal lost) is dropped, not returned.
   * One command per key: on a cluster the jobs' keys lie in other slots.
   */
  async openClaims(olderThanMs: number, limit = 100): Promise<Array<{ jobId: string; queue: string | null; leased: boolean }>> {
    const ids = await viaRedis(() =>
      this.redis.zrangebyscore(this.keys.pendingSubmits, '-inf', Date.now() - olderThanMs, 'LIMIT', 0, limit),
    );
    if (ids.length === 0) return [];
    const [queues, leases, records] = await viaRedis(() =>
      Promise.all([
        this.redis.hmget(this.keys.pendingQueues, ...ids),
        Promise.all(ids.map((id) => this.redis.exists(this.keys.submitLease(id)))),
        Promise.all(ids.map((id) => this.redis.get(this.keys.status(id)))),
      ]),
    );
    const open: Array<{ jobId: string; queue: string | null; leased: boolean }> = [];
    for (const [index, jobId] of ids.entries()) {
      const state = stateOf(records[index] ?? null);
      if (state !== null && state !== 'accepted') await this.closePending(jobId);
      else open.push({ jobId, queue: queues[index] ?? null, leased: leases[index] === 1 });
    }
    return open;
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
    // One command per key (the indexes lie in other slots on a cluster); a retry of a half-done drop finishes it.
    await viaRedis(() =>
      Promise.all([
        this.redis.del(this.keys.status(jobId), this.keys.events(jobId)),
        this.redis.zrem(this.keys.jobIndex, jobId),
        ...FINAL_STATES.map((state) => this.redis.zrem(this.keys.finishedIndex(state), jobId)),
      ]),
    );
  }

  /**
   * Puts a record read from storage back into the cache (no announcement),
   * only where Redis has none: the record was read a moment ago and a
   * writer may have moved the job on since (a blind write put a finished
   * job back to `queued` when a retried submit read storage just before the
   * worker wrote `done`; found in a Sentinel failover test).
   */
  async cache(jobId: string, status: JobStatus): Promise<void> {
    await viaRedis(() => this.redis.set(this.keys.status(jobId), JSON.stringify(status), 'EX', STATUS_CACHE_SECONDS, 'NX'));
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

  /** Written with its event id, or the record that stood in the way. */
  private async cas(jobId: string, next: JobStatus, from?: readonly JobState[], closeClaim = false): Promise<{ written: true; eventId: string } | { written: false; current: string }> {
    const allowed = statesBefore(next.status).filter((state) => !from || from.includes(state));
    const keys = [this.keys.status(jobId), this.keys.events(jobId)];
    if (closeClaim) keys.push(this.keys.submitLease(jobId));
    const json = JSON.stringify(next);
    const [written, value] = (await viaRedis(() =>
      TRANSITION.run(this.redis, keys, [json, `,${allowed.join(',')},`, STATUS_CACHE_SECONDS, this.keys.statusChannel, jobId, MAX_EVENTS]),
    )) as [number, string | null];
    return written === 1 ? { written: true, eventId: value ?? '' } : { written: false, current: value ?? 'null' };
  }

  /** Tells the observers (webhooks) of a change that was written; an observer's failure never fails the write. */
  private announce(jobId: string, eventId: string, type: 'status' | 'progress', before: JobStatus | null, after: JobStatus): void {
    for (const observer of this.observers) {
      try {
        observer({ jobId, eventId, type, before, after });
      } catch {
        // observers queue their own work and report their own errors
      }
    }
  }

  /**
   * A runner's progress on a processing job (0..1, and a message): in the
   * status and the job's events, not in storage (progress changes often and
   * the final status supersedes it). False when the job is not processing.
   */
  async progress(jobId: string, progress: number, message: string | null): Promise<boolean> {
    const reply = await viaRedis(() =>
      PROGRESS.run(
        this.redis,
        [this.keys.status(jobId), this.keys.events(jobId)],
        [String(Math.min(1, Math.max(0, progress))), message ?? '', STATUS_CACHE_SECONDS, this.keys.statusChannel, jobId, MAX_EVENTS],
      ),
    );
    if (!Array.isArray(reply)) return false;
    const [id, json] = reply as [string, string];
    // The script hands back the record it wrote: observers need no read of their own.
    if (this.observers.length) {
      const status = JobStatusSchema.safeParse(JSON.parse(json));
      if (status.success) this.announce(jobId, id, 'progress', status.data, status.data);
    }
    return true;
  }

  /** The job's recorded events after `afterId` (exclusive; all when null), oldest first. */
  async events(jobId: string, afterId: string | null, count = MAX_EVENTS): Promise<StoredEvent[]> {
    const start = afterId ? `(${afterId}` : '-';
    const rows = await viaRedis(() => this.redis.xrange(this.keys.events(jobId), start, '+', 'COUNT', count));
    const events: StoredEvent[] = [];
    for (const [id, fields] of rows) {
      const type = fieldOf(fields, 'type');
      const status = fieldOf(fields, 'status');
      if ((type !== 'status' && type !== 'progress') || !status) continue;
      try {
        events.push({ id, type, status: JobStatusSchema.parse(JSON.parse(status)) });
      } catch {
        // a record this version cannot read: skipped
      }
    }
    return events;
  }
}

/** A change this process wrote. `before` is null when unknown (a submit's commit). */
export interface StatusChange {
  jobId: string;
  eventId: string;
  type: 'status' | 'progress';
  before: JobStatus | null;
  after: JobStatus;
}
export type StatusObserver = (change: StatusChange) => void;

function withSticky(current: JobStatus | null, next: JobStatus): JobStatus {
  if (!current) return next;
  const kept: Partial<JobStatus> = {};
  for (const field of STICKY_FIELDS) {
    if (current[field] != null && next[field] == null) Object.assign(kept, { [field]: current[field] });
  }
  return Object.keys(kept).length ? { ...next, ...kept } : next;
}

/** How many events a job's stream keeps (progress included); older ones are trimmed. */
export const MAX_EVENTS = 500;

export interface StoredEvent {
  /** The stream entry id: the SSE event id. */
  id: string;
  type: 'status' | 'progress';
  status: JobStatus;
}

function fieldOf(fields: string[], name: string): string | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/** The `status` field of a cached record; null when there is none or it does not parse (the reconciler settles those). */
function stateOf(record: string | null): string | null {
  if (record === null) return null;
  try {
    const parsed: unknown = JSON.parse(record);
    const state = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>).status : undefined;
    return typeof state === 'string' ? state : null;
  } catch {
    return null;
  }
}

function storageLost(error: unknown): boolean {
  return error instanceof JobNotFoundError || error instanceof StorageUnavailableError;
}
