/** Storage did not answer or refused to work (network, credentials, disk). The gateway answers 503. */
export class StorageUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StorageUnavailableError';
  }
}

/** No storage exists for this job. The gateway answers 404. */
export class JobNotFoundError extends Error {
  constructor(readonly jobId: string) {
    super(`Data for job \`${jobId}\` does not exist`);
    this.name = 'JobNotFoundError';
  }
}

/** Storage for this job id already exists. The gateway answers 409. */
export class JobExistsError extends Error {
  constructor(readonly jobId: string) {
    super(`Job \`${jobId}\` already exists`);
    this.name = 'JobExistsError';
  }
}

/** The job exists but holds no such file. The gateway answers 404. */
export class FileNotFoundError extends Error {
  constructor(
    readonly jobId: string,
    readonly path: string,
  ) {
    super(`File \`${path}\` of job \`${jobId}\` does not exist`);
    this.name = 'FileNotFoundError';
  }
}

/** A file path that is empty, absolute, or climbs out of the job (`..`). The gateway answers 400. */
export class InvalidPathError extends Error {
  constructor(
    readonly path: string,
    rule = 'use a relative path without "." or ".." segments',
  ) {
    super(`Invalid file path ${JSON.stringify(path.length > 100 ? `${path.slice(0, 100)}…` : path)}: ${rule}`);
    this.name = 'InvalidPathError';
  }
}

/** A file path that collides with a file or folder already in the job (`a` and `a/b`). The gateway answers 409. */
export class FileConflictError extends Error {
  constructor(
    readonly jobId: string,
    readonly path: string,
  ) {
    super(`The path \`${path}\` of job \`${jobId}\` collides with a file or folder of the same name already there`);
    this.name = 'FileConflictError';
  }
}

/** The storage cannot take a file of unknown size (an S3 server without multipart upload). The gateway answers 411. */
export class SizeRequiredError extends Error {
  constructor() {
    super('This storage cannot take an upload of unknown size: send a Content-Length');
    this.name = 'SizeRequiredError';
  }
}
