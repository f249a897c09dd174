import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

export function bodyOf(data: string | Buffer): { body: Readable; size: number } {
  const buffer = typeof data === 'string' ? Buffer.from(data) : data;
  return { body: Readable.from([buffer]), size: buffer.length };
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A source that sends some bytes, then fails like a dropped client connection. */
export function brokenStream(goodBytes = 64 * 1024): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(randomBytes(goodBytes));
      } else {
        this.destroy(new Error('source broke'));
      }
    },
  });
}
