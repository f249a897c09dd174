import { InvalidPathError } from './errors';

/**
 * Checks a file path inside a job folder and returns it normalised. Rejects
 * what could reach outside the folder: absolute paths, `.`/`..` segments,
 * backslashes, NUL, empty segments.
 */
export function safeRelativePath(path: string): string {
  if (path.length === 0 || path.length > 1024 || path.startsWith('/') || path.includes('\\') || path.includes('\0')) {
    throw new InvalidPathError(path);
  }
  const segments = path.split('/');
  if (segments.some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw new InvalidPathError(path);
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
