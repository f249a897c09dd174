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
import { answeredByServer, codeOf, unavailableReason } from './s3-errors';
import { timedTransport } from './s3-transport';
import { parseStatus, STATUS_FILE } from './status-file';

/** Marks a job in the single-bucket layout, which has no bucket to show that it exists. */
const JOB_MARKER = '.shepherd-job';
const DEFAULT_TIMEOUT_MS = 10_000;

interface Location {
  bucket: string;
  /** Key prefix of the job: `` (bucket-per-job) or `<jobId>/` (single-bucket). */
  prefix: string;
}

/**
 * Jobs in S3 (MinIO, AWS, s3rver) through the minio client, in either layout:
 * bucket-per-job (`<jobId>/inputs/...`, the original's) or single-bucket
 * (`<bucket>/<jobId>/inputs/...`).
 */
/** How long a job seen to exist is trusted to still exist (single-bucket writes skip their LIST). */
const SEEN_JOB_TRUST_MS = 30_000;
const SEEN_JOBS_MAX = 10_000;

export class S3Storage implements JobStorage {
  /** Jobs this process saw exist, and until when that is trusted (ms), oldest first. */
  private readonly seenJobs = new Map<string, number>();
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
      // Not atomic: two creates of one id at once may both pass. Ids are unique by design.
      if (await this.hasObjects(bucket, prefix)) throw new JobExistsError(jobId);
      await this.client.putObject(bucket, prefix + JOB_MARKER, Buffer.alloc(0), 0);
      this.markSeen(jobId);
    });
  }

  async jobExists(jobId: string): Promise<boolean> {
    const { bucket, prefix } = this.locate(jobId);
    const exists = await this.guard(() => (this.perJob ? this.client.bucketExists(bucket) : this.hasObjects(bucket, prefix)));
    if (exists) this.markSeen(jobId);
    else this.seenJobs.delete(jobId);
    return exists;
  }

  async putFile(jobId: string, folder: JobFolder, path: string, body: Readable, size?: number): Promise<void> {
    const { bucket, prefix } = this.locate(jobId);
    const key = `${prefix}${folder}/${safeRelativePath(path)}`;
    return this.guard(async () => {
      if (!this.perJob) await this.requireJob(jobId);
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
        keys = await this.listKeys(bucket, folderPrefix);
      } catch (error) {
        throw codeOf(error) === 'NoSuchBucket' ? new JobNotFoundError(jobId) : error;
      }
      if (keys.length === 0 && !this.perJob) await this.requireJob(jobId);
      // Keys written by other clients may hold `..` or `//`: never hand those on as paths.
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
      if (!this.perJob) await this.requireJob(jobId);
      await this.client
        .putObject(bucket, prefix + STATUS_FILE, data, data.length, { 'Content-Type': 'application/json' })
        .catch((error) => {
          throw codeOf(error) === 'NoSuchBucket' ? new JobNotFoundError(jobId) : error;
        });
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
    this.seenJobs.delete(jobId);
    return this.guard(async () => {
      try {
        await this.removeKeys(bucket, await this.listKeys(bucket, prefix));
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

  private async hasObjects(bucket: string, prefix: string): Promise<boolean> {
    try {
      const page = await this.client.listObjectsQuery(bucket, prefix, '', { Delimiter: '', MaxKeys: 1 });
      return (page.objects?.length ?? 0) > 0;
    } catch (error) {
      if (codeOf(error) === 'NoSuchBucket') return false;
      throw error;
    }
  }

  /**
   * A single-bucket job "exists" while it holds objects: a LIST before each
   * write. A job this process saw exist a moment ago is taken on trust (a
   * LIST per write was most of the S3 requests per job in the benchmark);
   * a job deleted meanwhile by another process can get at most this long's
   * writes.
   */
  private async requireJob(jobId: string): Promise<void> {
    const seen = this.seenJobs.get(jobId);
    if (seen !== undefined && seen > Date.now()) return;
    if (!(await this.jobExists(jobId))) throw new JobNotFoundError(jobId);
  }

  private markSeen(jobId: string): void {
    if (this.seenJobs.size >= SEEN_JOBS_MAX) {
      const oldest = this.seenJobs.keys().next().value;
      if (oldest !== undefined) this.seenJobs.delete(oldest);
    }
    this.seenJobs.delete(jobId);
    this.seenJobs.set(jobId, Date.now() + SEEN_JOB_TRUST_MS);
  }

  /** Turns a not-found error into JobNotFoundError or FileNotFoundError (a HEAD answer has no body to tell which). */
  private async explainMissing(error: unknown, jobId: string, relative: string): Promise<unknown> {
    const code = codeOf(error);
    if (code === 'NoSuchBucket') return new JobNotFoundError(jobId);
    if (code !== 'NotFound' && code !== 'NoSuchKey') return error;
    return (await this.jobExists(jobId)) ? new FileNotFoundError(jobId, relative) : new JobNotFoundError(jobId);
  }

  /**
   * ListObjects V1, which every S3 server has: s3rver 3.7 cannot page V2
   * listings on OpenSSL 3 (its continuation tokens use DES) and answers 500.
   */
  private async listKeys(bucket: string, prefix: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const item of this.client.listObjects(bucket, prefix, true)) {
      const name = (item as { name?: string }).name;
      if (name !== undefined) keys.push(name);
    }
    return keys;
  }

  private async removeKeys(bucket: string, keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    let failures: unknown[];
    try {
      // minio answers the per-key failures of the batch, not an exception.
      failures = (await this.client.removeObjects(bucket, keys)).filter(Boolean);
    } catch (error) {
      if (!answeredByServer(error)) throw error;
      // Some S3-compatible servers lack or break multi-object delete (s3rver
      // 3.7 answers 500 when several keys share a folder): one DELETE per key.
      for (const key of keys) await this.client.removeObject(bucket, key);
      return;
    }
    if (failures.length > 0) {
      throw new Error(`Could not delete ${failures.length} object(s) in bucket ${bucket}: ${JSON.stringify(failures[0])}`);
    }
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

function isSafePath(path: string): boolean {
  try {
    safeRelativePath(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads a small object (the status record) whole. */
async function readText(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
