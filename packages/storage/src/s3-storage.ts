import { finished } from 'node:stream/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Readable } from 'node:stream';
import { Client } from 'minio';
import type { JobIdRule, JobStatus } from '@shepherd/contracts';
import { FileNotFoundError, JobExistsError, JobNotFoundError, StorageUnavailableError, SizeRequiredError } from './errors';
import type { JobFolder, JobStorage, StoredFile } from './job-storage';
import type { S3StorageOptions } from './options';
import { safeJobId, safeRelativePath } from './paths';
import { codeOf, unavailableReason } from './s3-errors';
import { hasObjects, isSafePath, listKeys, readText, removeKeys } from './s3-objects';
import { timedTransport } from './s3-transport';
import { SeenJobs } from './seen-jobs';
import { parseStatus, STATUS_FILE } from './status-file';

/**
 * Marks a job in the single-bucket layout, which has no bucket to show that it
 * exists, before its first large file (see beforeWrite).
 */
const JOB_MARKER = '.shepherd-job';
/** A first file up to this size marks its job itself: one PUT, where a marker would add one. */
const MARKERLESS_MAX = 64 * 1024;
const DEFAULT_TIMEOUT_MS = 10_000;

interface Location {
  bucket: string;
  /** Key prefix of the job: `` (bucket-per-job) or `<jobId>/` (single-bucket). */
  prefix: string;
}

/**
 * Jobs in S3 (MinIO, AWS, s3rver) through the minio client, in either layout:
 * bucket-per-job (`<jobId>/inputs/...`, the original's) or single-bucket
 * (`<bucket>/<jobId>/inputs/...`). A single-bucket job exists through its
 * objects: other processes see it from its first file on, the process that
 * created it from the start.
 */
export class S3Storage implements JobStorage {
  /** Single-bucket jobs this process saw exist or created: their writes skip the LIST. */
  private readonly seen = new SeenJobs();
  readonly jobIdRule: JobIdRule;
  private readonly client: Client;
  private readonly agent: http.Agent;
  /** `http(s)://host:port`, for messages (never the keys). */
  private readonly endpoint: string;
  private readonly region: string;
  private readonly perJob: boolean;
  private readonly bucket: string;
  private bucketReady?: Promise<void>;

  constructor(options: S3StorageOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new Error(`Invalid S3 url ${JSON.stringify(options.url)}: expected http(s)://host:port`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new Error(`Invalid S3 url ${JSON.stringify(options.url)}: expected http:// or https://`);
    }
    const useSSL = url.protocol === 'https:';
    this.endpoint = `${url.protocol}//${url.host}`;
    this.region = options.region ?? 'us-east-1';
    this.perJob = options.layout === 'bucket-per-job';
    this.jobIdRule = this.perJob ? 'bucket' : 'key';
    if (!this.perJob && !options.bucket) throw new Error('The single-bucket S3 layout needs a bucket name');
    this.bucket = options.bucket ?? '';
    // Idle sockets are dropped before servers drop them (Node's HTTP servers after 5 s), so a
    // request never goes out on a connection the server is closing: that fails as ECONNRESET.
    const agentOptions = { keepAlive: true, timeout: 4000 };
    this.agent = useSSL ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.client = new Client({
      endPoint: url.hostname,
      port: url.port ? Number(url.port) : useSSL ? 443 : 80,
      useSSL,
      pathStyle: true,
      accessKey: options.accessKey,
      secretKey: options.secretKey,
      // A known region spares a GetBucketLocation request before each call.
      region: this.region,
      transport: timedTransport(useSSL, options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS),
      transportAgent: this.agent,
      // minio retries 5xx answers only, logging with console.warn; jobs are retried by the queue instead.
      retryOptions: { disableRetry: true },
    });
  }

  async ping(): Promise<void> {
    return this.guard(async () => {
      // Scoped single-bucket keys may not list buckets.
      if (this.perJob) await this.client.listBuckets();
      else await this.client.bucketExists(this.bucket);
    });
  }

  async createJob(jobId: string): Promise<void> {
    const { bucket, prefix } = this.locate(jobId);
    return this.guard(async () => {
      if (this.perJob) {
        try {
          await this.client.makeBucket(bucket, this.region);
        } catch (error) {
          const code = codeOf(error);
          if (code === 'BucketAlreadyOwnedByYou' || code === 'BucketAlreadyExists') throw new JobExistsError(jobId);
          throw error;
        }
        return;
      }
      await this.ensureBucket();
      // Not atomic: two creates of one id at once may both pass, until the
      // first write of either lands. Ids are unique by design, and a submit
      // claims its id in Redis before it creates the job.
      if (this.seen.state(jobId) === 'created' || (await hasObjects(this.client, bucket, prefix))) throw new JobExistsError(jobId);
      // Nothing is written yet: the job's first file shows it exists (beforeWrite).
      this.seen.mark(jobId, 'created');
    });
  }

  async jobExists(jobId: string): Promise<boolean> {
    const { bucket, prefix } = this.locate(jobId);
    // Created here with nothing written yet: no object would show it.
    if (!this.perJob && this.seen.state(jobId) === 'created') return true;
    const exists = await this.guard(() => (this.perJob ? this.client.bucketExists(bucket) : hasObjects(this.client, bucket, prefix)));
    if (exists) this.seen.mark(jobId, 'stored');
    else this.seen.forget(jobId);
    return exists;
  }

  async putFile(jobId: string, folder: JobFolder, path: string, body: Readable, size?: number): Promise<void> {
    const { bucket, prefix } = this.locate(jobId);
    const key = `${prefix}${folder}/${safeRelativePath(path)}`;
    return this.guard(async () => {
      if (!this.perJob) await this.beforeWrite(jobId, size);
      // minio reads each part (64 MB; the whole file when `size` is smaller) into memory to sign
      // it. A file under that goes in one PUT, so a failing source uploads nothing; without
      // `size` minio goes multipart, which s3rver lacks.
      const put = this.client.putObject(bucket, key, body, size).catch((error) => {
        if (codeOf(error) === 'NoSuchBucket') throw new JobNotFoundError(jobId);
        // An unknown size goes multipart; a server without it (s3rver) says NotImplemented.
        if (codeOf(error) === 'NotImplemented' && size === undefined) throw new SizeRequiredError();
        throw error;
      });
      // minio waits forever on a source destroyed before its end (a client
      // that gave up mid-upload): a broken source fails the put at once.
      await Promise.race([put, finished(body, { writable: false }).then(() => put)]);
      this.afterWrite(jobId);
    });
  }

  async getFile(jobId: string, folder: JobFolder, path: string): Promise<StoredFile> {
    const { bucket, prefix } = this.locate(jobId);
    const relative = `${folder}/${safeRelativePath(path)}`;
    const key = prefix + relative;
    return this.guard(async () => {
      try {
        // The GET answers the size in its headers: no HEAD first (one request per file instead of two).
        const stream = await this.client.getObject(bucket, key);
        const length = Number((stream as { headers?: Record<string, string | undefined> }).headers?.['content-length']);
        const size = Number.isFinite(length) ? length : (await this.client.statObject(bucket, key)).size;
        // The job exists: a worker given its inputs (no listing) writes its outputs without a LIST.
        if (!this.perJob) this.seen.mark(jobId, 'stored');
        return { stream, size };
      } catch (error) {
        throw await this.explainMissing(error, jobId, relative);
      }
    });
  }

  async listFiles(jobId: string, folder: JobFolder): Promise<string[]> {
    const { bucket, prefix } = this.locate(jobId);
    const folderPrefix = `${prefix}${folder}/`;
    return this.guard(async () => {
      let keys: string[];
      try {
        keys = await listKeys(this.client, bucket, folderPrefix);
      } catch (error) {
        throw codeOf(error) === 'NoSuchBucket' ? new JobNotFoundError(jobId) : error;
      }
      if (!this.perJob) {
        // Objects listed show the job exists: the writes that follow (the worker's outputs and status) need no LIST.
        if (keys.length > 0) this.seen.mark(jobId, 'stored');
        else await this.requireJob(jobId);
      }
      return keys.map((key) => key.slice(folderPrefix.length)).filter(isSafePath).sort();
    });
  }

  async readStatus(jobId: string): Promise<JobStatus | null> {
    const { bucket, prefix } = this.locate(jobId);
    const key = prefix + STATUS_FILE;
    return this.guard(async () => {
      let stream: Readable;
      try {
        stream = await this.client.getObject(bucket, key);
      } catch (error) {
        if (['NoSuchKey', 'NoSuchBucket', 'NotFound'].includes(codeOf(error) ?? '')) return null;
        throw error;
      }
      return parseStatus(await readText(stream), `${this.endpoint}/${bucket}/${key}`);
    });
  }

  async writeStatus(jobId: string, status: JobStatus): Promise<void> {
    const { bucket, prefix } = this.locate(jobId);
    const data = Buffer.from(JSON.stringify(status));
    return this.guard(async () => {
      if (!this.perJob) await this.beforeWrite(jobId, data.length);
      await this.client
        .putObject(bucket, prefix + STATUS_FILE, data, data.length, { 'Content-Type': 'application/json' })
        .catch((error) => {
          throw codeOf(error) === 'NoSuchBucket' ? new JobNotFoundError(jobId) : error;
        });
      this.afterWrite(jobId);
    });
  }

  async deleteStatus(jobId: string): Promise<void> {
    const { bucket, prefix } = this.locate(jobId);
    return this.guard(async () => {
      await this.client.removeObject(bucket, prefix + STATUS_FILE).catch((error) => {
        if (codeOf(error) !== 'NoSuchBucket' && codeOf(error) !== 'NoSuchKey') throw error;
      });
    });
  }

  async deleteJob(jobId: string): Promise<void> {
    const { bucket, prefix } = this.locate(jobId);
    this.seen.forget(jobId);
    return this.guard(async () => {
      try {
        await removeKeys(this.client, bucket, await listKeys(this.client, bucket, prefix));
        if (this.perJob) await this.client.removeBucket(bucket);
      } catch (error) {
        if (codeOf(error) !== 'NoSuchBucket') throw error;
      }
    });
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }

  private locate(jobId: string): Location {
    const id = safeJobId(jobId);
    return this.perJob ? { bucket: id, prefix: '' } : { bucket: this.bucket, prefix: `${id}/` };
  }

  /** Creates the single bucket once per process; a failure is retried on the next call. */
  private ensureBucket(): Promise<void> {
    this.bucketReady ??= (async () => {
      if (await this.client.bucketExists(this.bucket)) return;
      try {
        await this.client.makeBucket(this.bucket, this.region);
      } catch (error) {
        const code = codeOf(error);
        if (code !== 'BucketAlreadyOwnedByYou' && code !== 'BucketAlreadyExists') throw error;
      }
    })().catch((error: unknown) => {
      this.bucketReady = undefined;
      throw error;
    });
    return this.bucketReady;
  }

  /**
   * A single-bucket job "exists" while it holds objects: a LIST before each
   * write. A job this process saw exist or created a moment ago is taken on
   * trust (a LIST per write was most of the S3 requests per job in the
   * benchmark); a job deleted meanwhile by another process can get at most
   * SEEN_JOB_TRUST_MS (seen-jobs.ts) of writes.
   */
  private async requireJob(jobId: string): Promise<void> {
    if (this.seen.state(jobId) !== undefined) return;
    if (!(await this.jobExists(jobId))) throw new JobNotFoundError(jobId);
  }

  /**
   * Single-bucket, before a write. The first write to a job created here
   * makes it visible to other processes: a small file (a payload, a status)
   * does so itself; a large or unsized one may take minutes to land, so an
   * empty marker goes first and the job is not unseen meanwhile.
   */
  private async beforeWrite(jobId: string, size: number | undefined): Promise<void> {
    if (this.seen.state(jobId) !== 'created') return this.requireJob(jobId);
    if (size !== undefined && size <= MARKERLESS_MAX) return;
    const { bucket, prefix } = this.locate(jobId);
    await this.client.putObject(bucket, prefix + JOB_MARKER, Buffer.alloc(0), 0);
    this.afterWrite(jobId);
  }

  /** A job created here holds an object now: other processes see it as S3 does. */
  private afterWrite(jobId: string): void {
    if (!this.perJob && this.seen.state(jobId) === 'created') this.seen.mark(jobId, 'stored');
  }

  /** Turns a not-found error into JobNotFoundError or FileNotFoundError (a HEAD answer has no body to tell which). */
  private async explainMissing(error: unknown, jobId: string, relative: string): Promise<unknown> {
    const code = codeOf(error);
    if (code === 'NoSuchBucket') return new JobNotFoundError(jobId);
    if (code !== 'NotFound' && code !== 'NoSuchKey') return error;
    return (await this.jobExists(jobId)) ? new FileNotFoundError(jobId, relative) : new JobNotFoundError(jobId);
  }

  /** Every public method runs through here: an unreachable or refusing server becomes StorageUnavailableError. */
  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      const reason = unavailableReason(error);
      if (reason === undefined) throw error;
      throw new StorageUnavailableError(`S3 storage at ${this.endpoint} is unavailable: ${reason}`, { cause: error });
    }
  }
}
