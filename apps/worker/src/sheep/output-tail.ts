import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';

/** Keeps the last `max` bytes a stream wrote, and appends everything to a file when one is configured. */
export class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;
  private file?: WriteStream;

  constructor(
    source: Readable,
    filePath: string | undefined,
    private readonly max = 8192,
  ) {
    if (filePath) {
      mkdirSync(dirname(filePath), { recursive: true });
      this.file = createWriteStream(filePath, { flags: 'a' });
      this.file.on('error', () => undefined); // a full disk must not take the sheep down
    }
    source.on('data', (chunk: Buffer) => this.push(chunk));
    source.on('end', () => this.file?.end());
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  private push(chunk: Buffer): void {
    this.file?.write(chunk);
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - (this.chunks[0]?.length ?? 0) >= this.max && this.chunks.length > 1) {
      this.size -= this.chunks.shift()?.length ?? 0;
    }
  }
}
