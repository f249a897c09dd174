import { createReadStream, createWriteStream, mkdirSync, promises as fs, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { INPUTS_FOLDER, OUTPUTS_FOLDER } from '@shepherd/contracts';
import type { JobStorage } from '@shepherd/storage';

/** Inputs up to this size are copied whole, with one synchronous write. */
const SMALL_FILE = 64 * 1024;

/**
 * Moves a job's files between storage and the sheep's local directory
 * `<data_root>/<sheep_id>/<job_id>/{inputs,outputs}`, as streams.
 */
export class Staging {
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
    await fs.rm(this.root, { recursive: true, force: true });
    await fs.mkdir(this.root, { recursive: true });
  }

  async stageInputs(jobId: string): Promise<void> {
    const dir = this.jobDir(jobId);
    // Directory calls are synchronous: microseconds each, where a promise
    // call costs a thread-pool hop; this is on every job's path. No job dir
    // is left to clear: start() wipes the sheep's root, settling removes it.
    mkdirSync(join(dir, INPUTS_FOLDER), { recursive: true });
    mkdirSync(join(dir, OUTPUTS_FOLDER), { recursive: true });
    for (const path of await this.storage.listFiles(jobId, INPUTS_FOLDER)) {
      const target = join(dir, INPUTS_FOLDER, ...path.split('/'));
      mkdirSync(dirname(target), { recursive: true });
      const file = await this.storage.getFile(jobId, INPUTS_FOLDER, path);
      if (file.size <= SMALL_FILE) {
        const chunks: Buffer[] = [];
        for await (const chunk of file.stream) chunks.push(chunk as Buffer);
        writeFileSync(target, Buffer.concat(chunks));
      } else {
        await pipeline(file.stream, createWriteStream(target));
      }
    }
  }

  async uploadOutputs(jobId: string): Promise<string[]> {
    const outputs = join(this.jobDir(jobId), OUTPUTS_FOLDER);
    const files = await listFiles(outputs);
    for (const file of files) {
      const { size } = await fs.stat(file);
      const path = relative(outputs, file).split(sep).join('/');
      await this.storage.putFile(jobId, OUTPUTS_FOLDER, path, createReadStream(file), size);
    }
    return files.map((file) => relative(outputs, file).split(sep).join('/'));
  }

  async remove(jobId: string): Promise<void> {
    rmSync(this.jobDir(jobId), { recursive: true, force: true });
  }
}

/** Regular files under `dir`, recursively; links are skipped so a runner cannot point the upload elsewhere. */
async function listFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await listFiles(path)));
    else if (entry.isFile()) found.push(path);
  }
  return found.sort();
}
