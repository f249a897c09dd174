import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { S3Counts } from './s3-node';

/** Forks `bench/dist/<file>` and waits for its `{ type: 'ready' }` message. */
export async function forkReady<T extends object>(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ child: ChildProcess; ready: T }> {
  const child = fork(join(__dirname, file), args, { env, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const ready = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} ${args[0] ?? ''}: not ready after 30 s`)), 30_000);
    child.on('message', (message: { type?: string }) => {
      if (message.type !== 'ready') return;
      clearTimeout(timer);
      resolve(message as T);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${file} ${args[0] ?? ''} exited with ${code}`));
    });
  });
  return { child, ready };
}

/** Ends a forked child: closes its IPC channel, then SIGTERM, then SIGKILL. */
export async function endChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  if (child.connected) child.disconnect();
  const term = setTimeout(() => child.kill('SIGTERM'), 3_000);
  const kill = setTimeout(() => child.kill('SIGKILL'), 8_000);
  await exited;
  clearTimeout(term);
  clearTimeout(kill);
}

/** s3rver in its own process behind a counting proxy in another. */
export interface S3Column {
  /** The proxy's URL: what the floor and Shepherd are given. */
  url: string;
  serverPid: number;
  /** Requests through the proxy since the last reset, by operation. */
  counts(reset?: boolean): Promise<S3Counts>;
  stop(): Promise<void>;
}

export async function startS3Column(): Promise<S3Column> {
  const server = await forkReady<{ url: string }>('s3-node.js', ['server']);
  const proxy = await forkReady<{ url: string }>('s3-node.js', ['proxy', server.ready.url]);
  return {
    url: proxy.ready.url,
    serverPid: server.child.pid ?? 0,
    counts: (reset = false) =>
      new Promise<S3Counts>((resolve) => {
        const listen = (message: { type?: string; counts?: S3Counts }): void => {
          if (message.type !== 'counts') return;
          proxy.child.off('message', listen);
          resolve(message.counts ?? {});
        };
        proxy.child.on('message', listen);
        proxy.child.send({ type: 'counts', reset });
      }),
    stop: async () => {
      await endChild(proxy.child);
      await endChild(server.child);
    },
  };
}

export function total(counts: S3Counts): number {
  return Object.values(counts).reduce((sum, n) => sum + n, 0);
}
