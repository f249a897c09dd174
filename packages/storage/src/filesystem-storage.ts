import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { JobIdRule, JobStatus } from '@shepherd/contracts';
import { FileConflictError, FileNotFoundError, JobExistsError, JobNotFoundError, StorageUnavailableError } from './errors';
import type { JobFolder, JobStorage, StoredFile } from './job-storage';
import { safeJobId, safeRelativePath } from './paths';
import { parseStatus, STATUS_FILE } from './status-file';

/** Files up to this size are written from one buffer (see writeSmall) and read in one call. */
const SMALL_FILE = 64 * 1024;
/** Holds files being written and jobs being deleted; job ids cannot start with "." so it never clashes. */
const TMP_DIR = '.tmp';

/** Errors of a path whose parts collide with what the job holds (a file where a folder is, or the reverse). */
const COLLISION_CODES = new Set(['ENOTDIR', 'EISDIR', 'EEXIST', 'ENOTEMPTY']);

/** Errors that mean the disk itself is unusable rather than a file missing. */
const UNAVAILABLE_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'EIO', 'ENOSPC', 'EDQUOT', 'ESTALE', 'ENOTCONN']);

/** `<root>/<jobId>/{inputs,outputs}/...` and `<root>/<jobId>/job_status.json` on a local or mounted disk. */
export class FilesystemStorage implements JobStorage {
  readonly jobIdRule: JobIdRule = 'key';
  private readonly root: string;
  private readonly tmp: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.tmp = join(this.root, TMP_DIR);
  }

  async ping(): Promise<void> {
    await this.ensureRoot();
    try {
      await fs.access(this.root, fs.constants.R_OK | fs.constants.W_OK);
    } catch (error) {
      throw this.unavailable(error, this.root);
    }
  }

  async createJob(jobId: string): Promise<void> {
    const dir = this.jobDir(jobId);
    const make = () =>
      fs.mkdir(dir).catch((error: unknown) => {
        throw code(error) === 'EEXIST' ? new JobExistsError(jobId) : error;
      });
    try {
      await make();
    } catch (error) {
      if (error instanceof JobExistsError) throw error;
      // The root is made (or found unusable) only when the job's folder cannot be: not two calls more per job.
      await this.ensureRoot();
      await make().catch((again: unknown) => {
        throw again instanceof JobExistsError ? again : this.mapError(again, dir);
      });
    }
  }

  async jobExists(jobId: string): Promise<boolean> {
    const dir = this.jobDir(jobId);
    try {
      return (await fs.stat(dir)).isDirectory();
    } catch (error) {
      if (code(error) === 'ENOENT') return false;
      throw this.mapError(error, dir);
    }
  }

  async putFile(jobId: string, folder: JobFolder, path: string, body: Readable, size?: number): Promise<void> {
    const target = this.filePath(jobId, folder, path);
    try {
      if (size !== undefined && size <= SMALL_FILE) {
        const chunks: Buffer[] = [];
        for await (const chunk of body) chunks.push(Buffer.from(chunk as Buffer));
        return await this.writeSmall(jobId, target, Buffer.concat(chunks));
      }
      await this.requireJob(jobId); // before a long upload, not only after it
      await this.writeAtomically(jobId, target, async (temp) => {
        await pipeline(body, createWriteStream(temp, { flags: 'wx' }));
      });
    } catch (error) {
      // `a` over a folder `a/`, or `a/b` under a file `a`: the client's paths collide.
      if (COLLISION_CODES.has(code(error) ?? '')) throw new FileConflictError(jobId, `${folder}/${path}`);
      throw error;
    }
  }

  async getFile(jobId: string, folder: JobFolder, path: string): Promise<StoredFile> {
    const file = this.filePath(jobId, folder, path);
    const missing = () => new FileNotFoundError(jobId, `${folder}/${path}`);
    let handle: fs.FileHandle;
    try {
      // putFile only makes regular files: a symlink was planted by hand and may point anywhere.
      handle = await fs.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    } catch (error) {
      if (code(error) === 'ENOENT' || code(error) === 'ENOTDIR' || code(error) === 'ELOOP') {
        await this.requireJob(jobId);
        throw missing();
      }
      throw this.mapError(error, file);
    }
    // Size and stream come from one open file, so a concurrent replace cannot make them disagree.
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw missing();
      // O_NOFOLLOW guards the last name only: a folder on the way may be a planted link.
      if (!(await this.realPathOf(handle, file)).startsWith(`${await this.realRoot()}${sep}${jobId}${sep}`)) throw missing();
      if (stat.size > SMALL_FILE) return { stream: handle.createReadStream(), size: stat.size };
      // Small (a payload, a result): read whole now, one read where a stream takes two and a close later.
      const data = await readUpTo(handle, stat.size);
      await handle.close();
      return { stream: Readable.from([data]), size: data.length };
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw this.mapError(error, file);
    }
  }

  async listFiles(jobId: string, folder: JobFolder): Promise<string[]> {
    const dir = join(this.jobDir(jobId), folder);
    const files: string[] = [];
    try {
      await walk(dir, '', files);
    } catch (error) {
      if (code(error) !== 'ENOENT') throw this.mapError(error, dir);
      await this.requireJob(jobId);
      return [];
    }
    return files.sort();
  }

  async readStatus(jobId: string): Promise<JobStatus | null> {
    const file = join(this.jobDir(jobId), STATUS_FILE);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (error) {
      if (code(error) === 'ENOENT' || code(error) === 'ENOTDIR') return null;
      throw this.mapError(error, file);
    }
    return parseStatus(text, file);
  }

  async writeStatus(jobId: string, status: JobStatus): Promise<void> {
    await this.writeSmall(jobId, join(this.jobDir(jobId), STATUS_FILE), Buffer.from(JSON.stringify(status)));
  }

  async deleteStatus(jobId: string): Promise<void> {
    const file = join(this.jobDir(jobId), STATUS_FILE);
    await fs.rm(file, { force: true }).catch((error: unknown) => {
      if (code(error) !== 'ENOTDIR') throw this.mapError(error, file);
    });
  }

  async deleteJob(jobId: string): Promise<void> {
    const dir = this.jobDir(jobId);
    // Move the job out of sight first: readers never see a half-deleted job
    // and the id can be created again at once.
    const trash = join(this.tmp, `deleted-${jobId}-${randomBytes(6).toString('hex')}`);
    try {
      await fs.mkdir(this.tmp, { recursive: true });
      await fs.rename(dir, trash);
    } catch (error) {
      if (code(error) === 'ENOENT') return;
      throw this.mapError(error, dir);
    }
    await fs.rm(trash, { recursive: true, force: true });
  }

  async close(): Promise<void> {}

  private realRootPath?: string;
  /** False once /proc/self/fd turned out to be missing (not Linux, or no /proc mounted). */
  private procFd = true;

  /** The root with its links resolved, once: a read's real path must lie under it. */
  private async realRoot(): Promise<string> {
    this.realRootPath ??= await fs.realpath(this.root);
    return this.realRootPath;
  }

  /**
   * Where the open file really is. On Linux one readlink of /proc/self/fd/N,
   * which also names the file actually opened; realpath instead reads a link
   * per folder from / down (five and more calls per read).
   */
  private async realPathOf(handle: fs.FileHandle, file: string): Promise<string> {
    if (this.procFd) {
      try {
        return await fs.readlink(`/proc/self/fd/${handle.fd}`);
      } catch (error) {
        if (code(error) !== 'ENOENT') throw error;
        this.procFd = false;
      }
    }
    return join(await fs.realpath(dirname(file)), basename(file));
  }

  private jobDir(jobId: string): string {
    return join(this.root, safeJobId(jobId));
  }

  private filePath(jobId: string, folder: JobFolder, path: string): string {
    return join(this.jobDir(jobId), folder, safeRelativePath(path));
  }

  private async requireJob(jobId: string): Promise<void> {
    if (!(await this.jobExists(jobId))) throw new JobNotFoundError(jobId);
  }

  /**
   * The same atomic write for small data, from one buffer: open, write,
   * close, rename; no check of the job before (renameIntoJob). Asynchronous,
   * though each call costs a thread-pool hop: synchronous calls were cheaper
   * on a fast local disk, but a slow or mounted one (NFS) held the whole
   * event loop, every request with it (0.7 ms a call measured on this
   * machine's disk; gateway event-loop p50 19 ms at saturation).
   */
  private async writeSmall(jobId: string, target: string, data: Buffer): Promise<void> {
    const temp = join(this.tmp, `${randomBytes(12).toString('hex')}.part`);
    try {
      try {
        await fs.writeFile(temp, data, { flag: 'wx' });
      } catch (error) {
        if (code(error) !== 'ENOENT') throw error;
        await fs.mkdir(this.tmp, { recursive: true }); // first write, or someone removed it
        await fs.writeFile(temp, data, { flag: 'wx' });
      }
      await this.renameIntoJob(jobId, temp, target);
    } catch (error) {
      await fs.rm(temp, { force: true });
      throw this.mapError(error, target);
    }
  }

  /** Writes into `.tmp` (same filesystem) and renames into place, so readers see all or nothing. */
  private async writeAtomically(jobId: string, target: string, write: (temp: string) => Promise<void>): Promise<void> {
    const temp = join(this.tmp, `${randomBytes(12).toString('hex')}.part`);
    try {
      await fs.mkdir(this.tmp, { recursive: true });
      await write(temp);
      await this.renameIntoJob(jobId, temp, target);
    } catch (error) {
      await fs.rm(temp, { force: true });
      throw this.mapError(error, target);
    }
  }

  /**
   * Moves a written temp file to its place. The rename alone when the folders
   * exist (a status record, a file of a folder already made); when it finds
   * one missing, the folders below the job's are made one by one, never the
   * job's own: a job that is gone (deleted meanwhile) stays gone and the
   * write fails with JobNotFoundError.
   */
  private async renameIntoJob(jobId: string, temp: string, target: string): Promise<void> {
    try {
      return await fs.rename(temp, target);
    } catch (error) {
      if (code(error) !== 'ENOENT') throw error;
    }
    const jobDir = this.jobDir(jobId);
    const gone = (error: unknown): unknown => (code(error) === 'ENOENT' ? new JobNotFoundError(jobId) : error);
    const segments = relative(jobDir, dirname(target)).split(sep).filter(Boolean);
    if (segments.length === 0) {
      // Straight into the job's folder (the status record): the folder itself is missing, or the temp file is.
      await fs.stat(jobDir).catch((missing: unknown) => {
        throw gone(missing);
      });
    }
    let dir = jobDir;
    for (const [i, segment] of segments.entries()) {
      dir = join(dir, segment);
      try {
        await fs.mkdir(dir);
      } catch (error) {
        // ENOENT on the first level: the job's folder is gone.
        if (code(error) !== 'EEXIST') throw i === 0 ? gone(error) : error;
      }
    }
    await fs.rename(temp, target);
  }

  private async ensureRoot(): Promise<void> {
    try {
      await fs.mkdir(this.root, { recursive: true });
    } catch (error) {
      // Whatever stops the root from existing (a file in the way, no permission) is a setup problem.
      throw this.unavailable(error, this.root);
    }
  }

  private mapError(error: unknown, path: string): unknown {
    const errorCode = code(error);
    return errorCode !== undefined && UNAVAILABLE_CODES.has(errorCode) ? this.unavailable(error, path) : error;
  }

  private unavailable(error: unknown, path: string): StorageUnavailableError {
    if (error instanceof StorageUnavailableError) return error;
    const reason = code(error) ?? (error instanceof Error ? error.message : String(error));
    return new StorageUnavailableError(`Filesystem storage at ${this.root} is unavailable: ${reason} on ${path}`, {
      cause: error,
    });
  }
}

/** Regular files only: symlinks could point outside the job. */
async function walk(dir: string, prefix: string, files: string[]): Promise<void> {
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const relative = prefix + entry.name;
    if (entry.isDirectory()) await walk(join(dir, entry.name), `${relative}/`, files);
    else if (entry.isFile()) files.push(relative);
  }
}

/** Reads a small open file whole: `size` bytes, or fewer if it shrank meanwhile. */
async function readUpTo(handle: fs.FileHandle, size: number): Promise<Buffer> {
  const data = Buffer.allocUnsafe(size);
  let filled = 0;
  while (filled < size) {
    const { bytesRead } = await handle.read(data, filled, size - filled, filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return data.subarray(0, filled);
}

function code(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}
