// Where the floor keeps a job's files: the filesystem, or S3 in either layout.
// Each method does only the requests a job server cannot skip (see floor.ts).
import { Agent } from 'node:http';
import { createRequire } from 'node:module';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

export type FloorStorage =
  | { kind: 'filesystem' }
  | { kind: 's3'; url: string; layout: 'bucket-per-job' | 'single-bucket'; bucket: string };

export interface FloorStore {
  /** Once, before any job: the single bucket. */
  prepare(): Promise<void>;
  /** The gateway's part: the job's record and its input. */
  accept(jobId: string, payload: string): Promise<void>;
  /** The worker's part before the runner: inputs staged, an outputs folder; returns the runner's io_data_root. */
  stage(jobId: string): Promise<string>;
  /** The worker's part after the runner: outputs stored, the done status written. */
  publish(jobId: string): Promise<void>;
}

/** `dir` is the storage root (filesystem) or the worker's local staging root (S3). */
export function floorStore(storage: FloorStorage, dir: string): FloorStore {
  return storage.kind === 's3' ? s3Store(storage, dir) : fileStore(dir);
}

const doneStatus = (): string => JSON.stringify({ status: 'done', finished_at: new Date().toISOString() });

/** The runner works in the storage folder itself: the input written and read, the output read back, one status write. */
function fileStore(dir: string): FloorStore {
  return {
    prepare: async () => undefined,
    async accept(jobId, payload) {
      await mkdir(join(dir, jobId, 'inputs'), { recursive: true });
      await writeFile(join(dir, jobId, 'inputs', 'input'), payload);
    },
    async stage(jobId) {
      await readFile(join(dir, jobId, 'inputs', 'input'));
      await mkdir(join(dir, jobId, 'outputs'));
      return dir;
    },
    async publish(jobId) {
      await readFile(join(dir, jobId, 'outputs', 'output'));
      await writeFile(join(dir, jobId, 'job_status.json'), doneStatus());
    },
  };
}

/** The part of the minio client the floor uses (bench resolves minio through @shepherd/storage, its one user). */
interface MinioClient {
  makeBucket(bucket: string, region: string): Promise<void>;
  bucketExists(bucket: string): Promise<boolean>;
  putObject(bucket: string, key: string, body: Buffer | string, size?: number): Promise<unknown>;
  getObject(bucket: string, key: string): Promise<Readable>;
  listObjectsV2(bucket: string, prefix: string, recursive: boolean): AsyncIterable<{ name?: string }>;
}

/**
 * Per job (bucket per job / one bucket): create the bucket (bucket per job
 * only), PUT the input and a `queued` status (the gateway); list the inputs,
 * GET each, PUT each output, PUT the `done` status (the worker). 7 / 6 requests.
 */
function s3Store(storage: Extract<FloorStorage, { kind: 's3' }>, localRoot: string): FloorStore {
  const url = new URL(storage.url);
  const requireFromStorage = createRequire(require.resolve('@shepherd/storage'));
  const { Client } = requireFromStorage('minio') as { Client: new (options: object) => MinioClient };
  const client = new Client({
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL: false,
    pathStyle: true,
    accessKey: 'S3RVER',
    secretKey: 'S3RVER',
    region: 'us-east-1', // spares a GetBucketLocation before each call
    transportAgent: new Agent({ keepAlive: true, timeout: 4000 }),
  });
  const perJob = storage.layout === 'bucket-per-job';
  const locate = (jobId: string) => (perJob ? { bucket: jobId, prefix: '' } : { bucket: storage.bucket, prefix: `${jobId}/` });
  return {
    async prepare() {
      if (!perJob && !(await client.bucketExists(storage.bucket))) await client.makeBucket(storage.bucket, 'us-east-1');
    },
    async accept(jobId, payload) {
      const { bucket, prefix } = locate(jobId);
      if (perJob) await client.makeBucket(bucket, 'us-east-1');
      const body = Buffer.from(payload);
      await client.putObject(bucket, `${prefix}inputs/input`, body, body.length);
      const queued = Buffer.from(JSON.stringify({ status: 'queued' }));
      await client.putObject(bucket, `${prefix}job_status.json`, queued, queued.length);
    },
    async stage(jobId) {
      const { bucket, prefix } = locate(jobId);
      const inputs = join(localRoot, jobId, 'inputs');
      await mkdir(inputs, { recursive: true });
      await mkdir(join(localRoot, jobId, 'outputs'));
      const names: string[] = [];
      for await (const item of client.listObjectsV2(bucket, `${prefix}inputs/`, true)) if (item.name) names.push(item.name);
      for (const name of names) {
        const chunks: Buffer[] = [];
        for await (const chunk of await client.getObject(bucket, name)) chunks.push(chunk as Buffer);
        await writeFile(join(inputs, name.slice(`${prefix}inputs/`.length)), Buffer.concat(chunks));
      }
      return localRoot;
    },
    async publish(jobId) {
      const { bucket, prefix } = locate(jobId);
      const outputs = join(localRoot, jobId, 'outputs');
      for (const name of await readdir(outputs)) {
        const body = await readFile(join(outputs, name));
        await client.putObject(bucket, `${prefix}outputs/${name}`, body, body.length);
      }
      const done = Buffer.from(doneStatus());
      await client.putObject(bucket, `${prefix}job_status.json`, done, done.length);
      await rm(join(localRoot, jobId), { recursive: true, force: true });
    },
  };
}
