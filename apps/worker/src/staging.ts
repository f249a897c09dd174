import { closeSync, constants, createReadStream, createWriteStream, fstatSync, mkdirSync, openSync, promises as fs, readSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { INPUTS_FOLDER, OUTPUTS_FOLDER } from '@shepherd/contracts';
import { safeRelativePath, type JobStorage } from '@shepherd/storage';

/** Inputs and outputs up to this size are moved whole, with one synchronous read or write. */
const SMALL_FILE = 64 * 1024;

/** What staging put in a job's directory (and the runner is expected to leave), to remove it without reading it back. */
interface Placed {
  files: string[];
  dirs: string[];
}

/**
 * Moves a job's files between storage and the sheep's local directory
 * `<data_root>/<sheep_id>/<job_id>/{inputs,outputs}`, as streams.
 *
 * Inputs are copied, never hard-linked from a filesystem storage on the same
 * disk, though a link is one call where a small copy is six: the runner runs
 * the user's code, often as root in a container, and may write to its inputs
 * in place; through a link that would change the job's stored input, which
 * the API serves and a retry stages again. (Storage replaces a file by
 * rename, so its writes would not reach the runner's copy: the leak is the
 * other way round, the way a runner controls.)
 */
export class Staging {
  /** Jobs staged and not yet removed: the paths made for each. */
  private readonly placed = new Map<string, Placed>();

  constructor(
    private readonly storage: JobStorage,
    /** `<data_root>/<sheep_id>`: the runner's `io_data_root`. */
    readonly root: string,
  ) {}

  /** Throws for an id that is not one plain name: the worker checks ids when it takes a job, this is the last guard. */
  jobDir(jobId: string): string {
    if (jobId === '' || jobId === '.' || jobId === '..' || basename(jobId) !== jobId || jobId.includes('\\')) {
      throw new Error(`Refusing a job directory for the id ${JSON.stringify(jobId)}`);
    }
    return join(this.root, jobId);
  }

  /** Wipes what an earlier run of this sheep left (the original wipes data_root on start). */
  async reset(): Promise<void> {
    this.placed.clear();
    await fs.rm(this.root, { recursive: true, force: true });
    await fs.mkdir(this.root, { recursive: true });
  }

  /**
   * `inputs`: the job's input paths when the caller knows them (a payload is
   * the one file `input`), which spares listing the folder in storage.
   */
  async stageInputs(jobId: string, inputs?: readonly string[]): Promise<void> {
    const dir = this.jobDir(jobId);
    const placed: Placed = { files: [], dirs: [] };
    this.placed.set(jobId, placed);
    // Directory calls are synchronous: microseconds each, where a promise
    // call costs a thread-pool hop; this is on every job's path. One mkdir
    // per folder: the sheep's root is made at start (and again if removed).
    makeDir(dir, placed, () => mkdirSync(this.root, { recursive: true }));
    makeDir(join(dir, INPUTS_FOLDER), placed);
    makeDir(join(dir, OUTPUTS_FOLDER), placed);
    const paths = inputs?.map(safeRelativePath) ?? (await this.storage.listFiles(jobId, INPUTS_FOLDER));
    for (const path of paths) {
      const target = join(dir, INPUTS_FOLDER, ...path.split('/'));
      if (path.includes('/')) makeParents(join(dir, INPUTS_FOLDER), dirname(target), placed);
      const file = await this.storage.getFile(jobId, INPUTS_FOLDER, path);
      if (file.size <= SMALL_FILE) {
        const chunks: Buffer[] = [];
        for await (const chunk of file.stream) chunks.push(chunk as Buffer);
        writeFileSync(target, Buffer.concat(chunks));
      } else {
        await pipeline(file.stream, createWriteStream(target));
      }
      placed.files.push(target);
    }
  }

  async uploadOutputs(jobId: string): Promise<string[]> {
    const outputs = join(this.jobDir(jobId), OUTPUTS_FOLDER);
    const placed = this.placed.get(jobId);
    const { files, dirs } = await listFiles(outputs);
    placed?.dirs.push(...dirs);
    const paths: string[] = [];
    for (const file of files) {
      const path = relative(outputs, file).split(sep).join('/');
      const { body, size } = openOutput(file);
      try {
        await this.storage.putFile(jobId, OUTPUTS_FOLDER, path, body, size);
      } finally {
        body.destroy(); // a put that failed before reading it leaves its file open otherwise
      }
      placed?.files.push(file);
      paths.push(path);
    }
    return paths;
  }

  /**
   * Removes the job's directory: what staging made and uploaded, by name
   * (an unlink or rmdir each), else whatever is there, by reading it back.
   */
  async remove(jobId: string): Promise<void> {
    const dir = this.jobDir(jobId);
    const placed = this.placed.get(jobId);
    this.placed.delete(jobId);
    if (placed && removePlaced(placed)) return;
    // The runner left more (a folder not empty), or staging never ran here.
    rmSync(dir, { recursive: true, force: true });
  }
}

/** mkdir of a folder whose parent exists: one call. `parentMissing` makes the parent when it does not. */
function makeDir(dir: string, placed: Placed, parentMissing?: () => void): void {
  try {
    mkdirSync(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // EEXIST: left by an earlier try of this job whose removal failed; removed with this one.
    if (code !== 'EEXIST') {
      if (code !== 'ENOENT' || !parentMissing) throw error;
      parentMissing();
      return makeDir(dir, placed);
    }
  }
  placed.dirs.push(dir);
}

/** The folders from `base` (which exists) down to `dir`, each made once per job. */
function makeParents(base: string, dir: string, placed: Placed): void {
  let current = base;
  for (const segment of relative(base, dir).split(sep)) {
    current = join(current, segment);
    if (!placed.dirs.includes(current)) makeDir(current, placed);
  }
}

/** Unlinks the files and removes the folders (deepest first); false at the first thing that is not as staging left it. */
function removePlaced(placed: Placed): boolean {
  try {
    for (const file of placed.files) {
      try {
        unlinkSync(file);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error; // the runner removed it
      }
    }
    for (const dir of [...new Set(placed.dirs)].sort((a, b) => b.length - a.length)) rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

/**
 * An output opened once for its size and content; a small one is read whole
 * (open, fstat, read, close). O_NOFOLLOW: the listing skipped links, and a
 * runner cannot swap one in after it.
 */
function openOutput(file: string): { body: Readable; size: number } {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const { size } = fstatSync(fd);
    if (size > SMALL_FILE) return { body: createReadStream(file, { fd }), size };
    const data = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const read = readSync(fd, data, filled, size - filled, filled);
      if (read === 0) break;
      filled += read;
    }
    closeSync(fd);
    return { body: Readable.from([data.subarray(0, filled)]), size: filled };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/** Regular files under `dir`, recursively, and the folders met; links are skipped so a runner cannot point the upload elsewhere. */
async function listFiles(dir: string): Promise<{ files: string[]; dirs: string[] }> {
  const found = { files: [] as string[], dirs: [] as string[] };
  for (const entry of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const below = await listFiles(path);
      found.dirs.push(path, ...below.dirs);
      found.files.push(...below.files);
    } else if (entry.isFile()) {
      found.files.push(path);
    }
  }
  found.files.sort();
  return found;
}
