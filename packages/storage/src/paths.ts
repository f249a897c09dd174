import { InvalidPathError } from './errors';

/** Longest file path inside a job folder, in UTF-8 bytes: an S3 key is at most 1,024 with the job id and folder before it. */
export const MAX_PATH_BYTES = 800;
/** Longest path segment, in UTF-8 bytes: file names are at most 255 on common filesystems, less the room temporary names take. */
export const MAX_SEGMENT_BYTES = 200;

/**
 * Checks a file path inside a job folder and returns it normalised. Rejects
 * what could reach outside the folder (absolute paths, `.`/`..` segments,
 * backslashes, NUL, empty segments) and names too long for S3 or a
 * filesystem (which would fail deep in the backend instead of here).
 */
export function safeRelativePath(path: string): string {
  if (path.length === 0 || path.startsWith('/') || path.includes('\\') || path.includes('\0')) {
    throw new InvalidPathError(path);
  }
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) throw new InvalidPathError(path, `at most ${MAX_PATH_BYTES} bytes in all`);
  const segments = path.split('/');
  if (segments.some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw new InvalidPathError(path);
  }
  if (segments.some((segment) => Buffer.byteLength(segment) > MAX_SEGMENT_BYTES)) {
    throw new InvalidPathError(path, `at most ${MAX_SEGMENT_BYTES} bytes between two "/"`);
  }
  return segments.join('/');
}

/**
 * Job ids are validated at the edge (see JobIdRule); this is the last line of
 * defence before one becomes a directory or key prefix.
 */
export function safeJobId(jobId: string): string {
  if (jobId.length === 0 || jobId.startsWith('.') || /[/\\\0]/.test(jobId)) {
    throw new InvalidPathError(jobId);
  }
  return jobId;
}
