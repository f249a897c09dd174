import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
// s3rver has no type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver');

export interface S3ServerHandle {
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  accessKey: string;
  secretKey: string;
  directory: string;
  stop(): Promise<void>;
}

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}

/**
 * Starts a real S3-protocol server (s3rver) on a free loopback port, or on
 * `port` when given (to restart one at the same address), keeping its files
 * in `directory` or a fresh temp dir.
 */
export async function startS3Server(options: { port?: number; directory?: string } = {}): Promise<S3ServerHandle> {
  const directory = options.directory ?? mkdtempSync(join(tmpdir(), 'shepherd-s3-'));
  const server: S3rverInstance = new S3rver({
    port: options.port ?? 0,
    address: '127.0.0.1',
    directory,
    silent: true,
  });
  const address = await server.run();
  const ownsDirectory = options.directory === undefined;
  return {
    url: `http://127.0.0.1:${address.port}`,
    port: address.port,
    accessKey: 'S3RVER',
    secretKey: 'S3RVER',
    directory,
    async stop() {
      await server.close();
      if (ownsDirectory) rmSync(directory, { recursive: true, force: true });
    },
  };
}
