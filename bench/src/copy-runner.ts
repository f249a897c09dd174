import { createReadStream, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BaseRunner } from '@shepherd/runner';

/** Copies inputs/input to outputs/output as a stream: a runner that holds nothing in memory. */
export default class CopyRunner extends BaseRunner {
  async processJob(inputDir: string, outputDir: string): Promise<void> {
    await pipeline(createReadStream(join(inputDir, 'input')), createWriteStream(join(outputDir, 'output')));
  }
}
