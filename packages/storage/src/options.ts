export interface FilesystemStorageOptions {
  backend: 'filesystem';
  /** Directory holding one folder per job. */
  root: string;
}

export interface S3StorageOptions {
  backend: 's3';
  /** `http://host:port` or `https://host:port` (TLS). */
  url: string;
  accessKey: string;
  secretKey: string;
  /** Default `us-east-1`. */
  region?: string;
  /**
   * `bucket-per-job` (the original's: one bucket named by the job id) or
   * `single-bucket` (`<bucket>/<job_id>/...`, for many jobs).
   */
  layout: 'bucket-per-job' | 'single-bucket';
  /** The bucket of the single-bucket layout (required there); created when missing. */
  bucket?: string;
  /**
   * How long a request may go without an answer (connecting, or waiting for
   * the response headers) before it fails with StorageUnavailableError.
   * Default 10000 ms.
   */
  requestTimeoutMs?: number;
}

export type StorageOptions = FilesystemStorageOptions | S3StorageOptions;
