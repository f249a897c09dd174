// Child processes of the S3 column, started with fork: `server` runs s3rver
// (the S3-protocol server the tests use), so its CPU is measured apart;
// `proxy <target>` passes every request through to it and counts them by
// operation. Both report their address over IPC; the proxy answers
// { type: 'counts', reset? } with the counts so far.
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startS3Server } from '@shepherd/testing';

export type S3Counts = Record<string, number>;

/** `PUT object`, `GET ?list-type`, `PUT bucket`, ...: the method and what the path and query name. */
export function operation(method: string, url: string): string {
  const [path = '', query = ''] = url.split('?');
  const segments = path.split('/').filter(Boolean).length;
  const target = segments === 0 ? 'service' : segments === 1 ? 'bucket' : 'object';
  const keys = query
    .split('&')
    .map((pair) => pair.split('=')[0])
    .filter((key) => key && !key.startsWith('X-Amz-'));
  return `${method} ${target}${keys.length ? ` ?${keys.sort().join('&')}` : ''}`;
}

async function server(): Promise<void> {
  const s3 = await startS3Server();
  process.send?.({ type: 'ready', url: s3.url });
  process.on('disconnect', () => void s3.stop().finally(() => process.exit(0)));
}

async function proxy(targetUrl: string): Promise<void> {
  const target = new URL(targetUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  let counts: S3Counts = {};
  const proxyServer = createServer((req, res) => {
    const op = operation(req.method ?? 'GET', req.url ?? '/');
    counts[op] = (counts[op] ?? 0) + 1;
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', (error) => {
      if (!res.headersSent) res.writeHead(502);
      res.end(String(error));
    });
    req.pipe(upstream);
  });
  proxyServer.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => proxyServer.listen(0, '127.0.0.1', resolve));
  const { port } = proxyServer.address() as AddressInfo;
  process.on('message', (message: { type?: string; reset?: boolean }) => {
    if (message.type !== 'counts') return;
    process.send?.({ type: 'counts', counts });
    if (message.reset) counts = {};
  });
  process.send?.({ type: 'ready', url: `http://127.0.0.1:${port}` });
  process.on('disconnect', () => process.exit(0));
}

if (require.main === module) {
  const [role, arg] = process.argv.slice(2);
  (role === 'server' ? server() : proxy(arg ?? '')).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
