import type { Readable } from 'node:stream';
import type { JobFolder, JobIdRule, JobStatus } from '@shepherd/contracts';

export type { JobFolder };

export interface StoredFile {
  stream: Readable;
  /** Size in bytes. */
  size: number;
}

/**
 * Where job data lives: a job's `inputs/`, `outputs/` and `job_status.json`.
 * File paths are relative to the folder (`input`, `images/a.png`). Every
 * method raises StorageUnavailableError when the backend cannot be reached.
 */
export interface JobStorage {
  /** Which job ids this storage can hold (bucket names are stricter than keys). */
  readonly jobIdRule: JobIdRule;
  /** Throws StorageUnavailableError unless the backend answers. */
  ping(): Promise<void>;
  /** Creates the job's space. Throws JobExistsError when it already exists. */
  createJob(jobId: string): Promise<void>;
  jobExists(jobId: string): Promise<boolean>;
  /**
   * Streams `body` into `<folder>/<path>`. Readers never see a partial file:
   * a failed or aborted write leaves nothing (or the previous file). `size`,
   * when known, lets S3 send it in one request.
   * Throws JobNotFoundError when the job does not exist.
   */
  putFile(jobId: string, folder: JobFolder, path: string, body: Readable, size?: number): Promise<void>;
  /** Throws JobNotFoundError or FileNotFoundError. */
  getFile(jobId: string, folder: JobFolder, path: string): Promise<StoredFile>;
  /** Relative paths of every file in the folder, sorted. Throws JobNotFoundError. */
  listFiles(jobId: string, folder: JobFolder): Promise<string[]>;
  /** The durable status record, or null when none was written. */
  readStatus(jobId: string): Promise<JobStatus | null>;
  /** Replaces the status record atomically. Throws JobNotFoundError. */
  writeStatus(jobId: string, status: JobStatus): Promise<void>;
  /** Removes the status record only (a start that failed half-way); no error when there is none. */
  deleteStatus(jobId: string): Promise<void>;
  /** Removes the job and everything in it; no error when it does not exist. */
  deleteJob(jobId: string): Promise<void>;
  close(): Promise<void>;
}
