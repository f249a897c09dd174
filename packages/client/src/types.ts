import { z } from 'zod';
import { JobStatusSchema, type JobStatus, type Model, type StartJobRequest } from '@shepherd/contracts';

// Every shape here comes from the zod schemas of @shepherd/contracts, the
// ones the gateway validates and answers with: nothing is written twice.
export type { JobState, JobStatus, Model, StartJobRequest, WebhookEvent } from '@shepherd/contracts';
export { JOB_STATES, WEBHOOK_EVENTS, isFinished } from '@shepherd/contracts';

/** A status with its job's id: an entry of `GET /jobs`, and the data of an event. */
export const JobWithIdSchema = JobStatusSchema.extend({ job_id: z.string() });
export type JobWithId = z.infer<typeof JobWithIdSchema>;

/** `GET /jobs`: one page, newest first. */
export const JobListSchema = z.object({ jobs: z.array(JobWithIdSchema), next_cursor: z.string().nullable() });
export type JobList = z.infer<typeof JobListSchema>;

export interface ListQuery {
  status?: JobStatus['status'];
  /** `name` or `name:version`. */
  model?: string;
  sheep?: string;
  /** 1..1000, default 100 (the gateway's). */
  limit?: number;
  cursor?: string;
}

/** A body the client can upload; a stream goes out as it is read (Node needs a size for S3 storage without multipart). */
export type InputBody = string | Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array>;

/** One input file of a job. */
export interface JobInput {
  /** Where it goes under `inputs/`: `input` is what runners read by default. */
  path: string;
  /**
   * The bytes, or a function that makes them: a function lets a failed
   * upload (503, network) be retried with a fresh stream; a bare stream is
   * sent once.
   */
  body: InputBody | (() => InputBody | Promise<InputBody>);
  /** Bytes; sent as Content-Length. Known for strings, bytes and blobs; give it for streams. */
  size?: number;
}

/** Bytes moved so far for one file (uploads and downloads). */
export interface TransferProgress {
  /** `inputs/<path>` or `outputs/<file>`. */
  file: string;
  loaded: number;
  /** Null when the size is not known. */
  total: number | null;
  done: boolean;
}

export type ProgressListener = (progress: TransferProgress) => void;

/** What `submit` takes: the start-job body, with the model also as `name:version`, a job id made up when absent, and inputs to upload first. */
export type SubmitRequest = Omit<StartJobRequest, 'job_id' | 'model'> & {
  /** Default: a random id valid under both storage rules (lowercase letters and digits). */
  job_id?: string;
  model: Model | string;
  /** Uploaded one by one before the start; then `payload` is usually left out. */
  inputs?: JobInput[];
};

/** A Server-Sent Event of `GET /jobs/{id}/events`, or a change seen by polling when the gateway has no such route. */
export interface JobEvent {
  /** The event id to resume after; null for polled changes. */
  id: string | null;
  type: 'status' | 'progress';
  status: JobWithId;
}

/** `name:version` → `{name, version}` (the version is after the last colon; names have none). */
export function parseModel(model: Model | string): Model {
  if (typeof model !== 'string') return model;
  const colon = model.lastIndexOf(':');
  if (colon <= 0 || colon === model.length - 1) throw new TypeError(`Invalid model ${JSON.stringify(model)}: expected name:version`);
  return { name: model.slice(0, colon), version: model.slice(colon + 1) };
}

/** A random job id valid under both id rules (bucket and key): `j` and 23 lowercase letters and digits. */
export function newJobId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(23));
  let id = 'j';
  for (const byte of bytes) id += alphabet[byte % alphabet.length];
  return id;
}
