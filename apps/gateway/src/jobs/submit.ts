import { Inject, Injectable, Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ShepherdConfig } from '@shepherd/config';
import { INPUTS_FOLDER, jobStatus, modelKey, type JobData, type JobLife, type StartJobRequest } from '@shepherd/contracts';
import { JobIndex, JobQueues, RedisUnavailableError, type RedisClient, StartDeadlines, StatusStore, UploadsInFlight, WaitingJobs } from '@shepherd/queue';
import { JobExistsError, JobNotFoundError, type JobStorage } from '@shepherd/storage';
import { ApiError, conflict, notFound, unavailable } from '../errors/api-errors';
import { CONFIG, REDIS, STORAGE } from '../core/tokens';
import { reachStep } from './submit-hooks';
import type { Utf8Bytes } from './streamed-json';
import { requestedWebhook } from '../webhooks/webhook-request';

/** The file a `payload` becomes: inputs/input. */
const PAYLOAD_FILE = 'input';

/** How long a submit waits for the replicas to acknowledge it. */
const REPLICA_WAIT_MS = 2000;

/** How often a retry looks again at another submit's live claim. */
const BUSY_POLL_MS = 100;

/**
 * The submit of a job, in steps that leave nothing stranded:
 * 1. claim the id in Redis (`accepted`, under a lease this submit renews);
 * 2. write the payload (or find the uploaded inputs);
 * 3. write the durable `queued` record;
 * 4. add the job to its queue: the commit point (BullMQ's add with the job
 *    id is atomic and idempotent);
 * 5. record `queued` in Redis and close the claim.
 * A failure before 4 gives the claim back; a gateway that dies lets its
 * lease lapse, and the retry (or the reconciler) finds out from the queue
 * whether the job was committed. So 409 always means "this job exists and
 * has run or will run", never "this id is burnt".
 */
@Injectable()
export class Submitter {
  private readonly logger = new Logger('Submit');

  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    @Inject(STORAGE) private readonly storage: JobStorage,
    @Inject(REDIS) private readonly redis: RedisClient,
    private readonly statuses: StatusStore,
    private readonly queues: JobQueues,
    private readonly waiting: WaitingJobs,
    private readonly uploads: UploadsInFlight,
    private readonly index: JobIndex,
    private readonly deadlines: StartDeadlines,
  ) {}

  /**
   * `owner`: the API token's name, remembered on the job (null on an open gateway).
   * `payload`: the bytes of inputs/input; without it the inputs must have been uploaded.
   */
  async submit(request: StartJobRequest, owner: string | null = null, payload?: Utf8Bytes): Promise<void> {
    const jobId = request.job_id;
    // Checked before the claim: a refused webhook leaves nothing behind. Kept on every record (sticky).
    const webhook = await requestedWebhook(request, this.config);
    const data: JobData = {
      jobId,
      model: request.model,
      ...(request.sheep_id ? { sheepId: request.sheep_id } : {}),
      enqueuedAt: new Date().toISOString(),
      ...(owner ? { owner } : {}),
      ...limitsOf(request, this.config),
    };
    const queue = this.queues.queueName(data);
    const token = randomUUID();
    await this.claim(jobId, request, token, queue, owner, webhook);
    if (owner) await this.waiting.add(owner, jobId).catch(() => undefined); // pruned if it lingers
    await reachStep('claimed');

    const leaseMs = this.config.gateway.submitLeaseMs;
    const renew = setInterval(() => {
      this.statuses.renewClaim(jobId, token, leaseMs).catch(() => undefined);
    }, Math.max(100, Math.floor(leaseMs / 3)));
    try {
      const created = await this.prepare(jobId, request, queue, token, owner, webhook, payload);
      // A job this submit created from a payload holds that one file: the worker need not list its inputs.
      if (payload && created) data.inputs = [PAYLOAD_FILE];
      // Before the commit, so a committed job is always listed (an id listed without a status is skipped).
      // One connection applies commands in the order sent: the add need not wait for their replies (a cluster's nodes do not share an order).
      const before = Promise.all([this.index.added(jobId, Date.parse(data.enqueuedAt)), data.startBy ? this.deadlines.add(queue, jobId, data.startBy) : undefined]);
      if (this.config.redis.cluster) await before;
      const add = this.queues.add(data).catch(async (error: unknown) => {
        // Redis answered "no": nothing was added, undo now. Redis gone: the
        // add may have landed; the claim lapses and the retry or the
        // reconciler reads the queue to know.
        if (!(error instanceof RedisUnavailableError)) await this.giveBack(jobId, token, { record: true, job: created });
        throw error;
      });
      await Promise.all([before, add]);
    } finally {
      clearInterval(renew);
    }
    await reachStep('added');

    const queued = jobStatus.queued({ model: data.model, enqueuedAt: data.enqueuedAt, owner, webhook });
    // The job is committed: whatever happens now, it runs. If Redis is away
    // here, the claim lapses and the reconciler records `queued` later.
    await this.statuses.commitClaim(jobId, queued, { complete: true }).catch((error: unknown) => {
      this.logger.warn({ jobId, err: error }, 'job queued, but its status could not be recorded yet; the reconciler will');
    });
    await this.awaitReplicas(jobId);
    await reachStep('committed');
  }

  /**
   * With replicas (Sentinel), a submit is answered only once they have it:
   * a failover right after a 200 would otherwise lose the job. Without
   * enough acknowledgements the client hears 503 and retries; its retry
   * finds the job (409) or, if the failover lost it, submits it again.
   */
  private async awaitReplicas(jobId: string): Promise<void> {
    const wanted = this.config.redis.minReplicasAck;
    if (wanted <= 0) return;
    const acked = await this.redis.wait(wanted, REPLICA_WAIT_MS).catch(() => 0);
    if (acked < wanted) {
      this.logger.warn({ jobId, acked, wanted }, 'submit not yet on enough replicas; answering 503');
      throw unavailable(`Job \`${jobId}\` is not yet safe on the Redis replicas; retry`);
    }
  }

  /**
   * Steps 2 and 3; on failure the claim is given back (or left to lapse
   * when even that fails). True when this submit created the job's storage.
   */
  private async prepare(jobId: string, request: StartJobRequest, queue: string, token: string, owner: string | null, webhook: JobLife['webhook'], payload?: Utf8Bytes): Promise<boolean> {
    let created = false;
    let recorded = false;
    try {
      created = await this.store(jobId, queue, payload);
      await reachStep('stored');
      recorded = true; // from here a write may have landed even if it throws
      await this.storage.writeStatus(jobId, jobStatus.queued({ model: request.model, enqueuedAt: new Date().toISOString(), owner, webhook }));
      await reachStep('prepared');
      return created;
    } catch (error) {
      await this.giveBack(jobId, token, { record: recorded, job: created && !isConflict(error) });
      throw error;
    }
  }

  /** Takes the id, waiting while another submit of it is in progress. */
  private async claim(jobId: string, request: StartJobRequest, token: string, queue: string, owner: string | null, webhook: JobLife['webhook']): Promise<void> {
    const leaseMs = this.config.gateway.submitLeaseMs;
    const deadline = Date.now() + leaseMs + 1000;
    for (;;) {
      const claim = await this.statuses.claim(jobId, jobStatus.accepted(request.model, owner, webhook), token, leaseMs, queue);
      if (claim.kind === 'exists') throw conflict(`Job \`${jobId}\` already exists`);
      if (claim.kind === 'claimed') {
        if (claim.tookOver) this.logger.warn({ jobId }, 'took over the claim of a submit whose gateway went away');
        return;
      }
      if (Date.now() > deadline) throw unavailable(`A submit of job \`${jobId}\` is still in progress; retry later`);
      await new Promise((resolve) => setTimeout(resolve, BUSY_POLL_MS));
    }
  }

  /** Writes the payload or finds the uploaded inputs; true when it created the job's storage. */
  private async store(jobId: string, queue: string, payload: Utf8Bytes | undefined): Promise<boolean> {
    if (payload) {
      let created = true;
      try {
        await this.storage.createJob(jobId);
      } catch (error) {
        if (!(error instanceof JobExistsError)) throw error;
        created = false;
        await this.refuseExisting(jobId, queue);
      }
      await this.storage.putFile(jobId, INPUTS_FOLDER, PAYLOAD_FILE, Readable.from(payload.chunks), payload.size);
      return created;
    }
    await this.refuseExisting(jobId, queue);
    if (await this.uploads.any(jobId)) {
      throw unavailable(`An upload to job \`${jobId}\` is still in progress: start the job once it has finished`);
    }
    const inputs = await this.storage.listFiles(jobId, INPUTS_FOLDER).catch((error: unknown) => {
      if (error instanceof JobNotFoundError) return [];
      throw error;
    });
    if (inputs.length === 0) {
      throw notFound(`Data for job \`${jobId}\` does not exist: upload its inputs first or give a payload`);
    }
    return false;
  }

  /**
   * The job's storage exists: uploaded inputs, what a submit that died left
   * behind, or a job Redis forgot (a flush). Only the last is a conflict:
   * its durable record is past `queued`, or `queued` and on its queue.
   */
  private async refuseExisting(jobId: string, queue: string): Promise<void> {
    const stored = await this.storage.readStatus(jobId);
    if (!stored || stored.status === 'accepted') return;
    if (stored.status === 'queued' && !(await this.queues.find(queue, jobId))) return;
    await this.statuses.cache(jobId, stored).catch(() => undefined);
    throw conflict(`Job \`${jobId}\` already exists`);
  }

  /** Undoes a submit that did not commit: its `queued` record, the storage it created, its claim. */
  private async giveBack(jobId: string, token: string, drop: { record: boolean; job: boolean }): Promise<void> {
    try {
      if (drop.job) await this.storage.deleteJob(jobId);
      else if (drop.record) await this.storage.deleteStatus(jobId);
      await this.statuses.releaseClaim(jobId, token);
    } catch (error) {
      this.logger.warn({ jobId, err: error }, 'could not give back the claim of a failed submit; it lapses by itself');
    }
  }
}

function isConflict(error: unknown): boolean {
  return error instanceof ApiError && error.status === 409;
}

/**
 * The job's limits: what the request asks, else the model's config
 * (`name:version` over `name`), else the worker defaults; the runner time
 * capped by worker.max_job_timeout.
 */
export function limitsOf(request: StartJobRequest, config: ShepherdConfig): Pick<JobData, 'timeoutMs' | 'startBy' | 'priority'> {
  const models = config.models;
  const own = Object.hasOwn(models, modelKey(request.model)) ? models[modelKey(request.model)] : undefined;
  const byName = Object.hasOwn(models, request.model.name) ? models[request.model.name] : undefined;
  const asked = (seconds: number | null | undefined) => (typeof seconds === 'number' ? Math.round(seconds * 1000) : undefined);
  let timeoutMs = asked(request.timeout) ?? own?.timeoutMs ?? byName?.timeoutMs ?? config.worker.jobTimeoutMs;
  const cap = config.worker.maxJobTimeoutMs;
  if (cap !== undefined) timeoutMs = Math.min(timeoutMs ?? cap, cap);
  const queueTimeoutMs = asked(request.queue_timeout) ?? own?.queueTimeoutMs ?? byName?.queueTimeoutMs ?? config.worker.queueTimeoutMs;
  return {
    ...(timeoutMs ? { timeoutMs } : {}),
    ...(queueTimeoutMs ? { startBy: Date.now() + queueTimeoutMs } : {}),
    ...(typeof request.priority === 'number' && request.priority !== 0 ? { priority: request.priority } : {}),
  };
}
