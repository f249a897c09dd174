import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A pass-through HTTP proxy in front of a real S3 server that writes down each
 * request as `METHOD /path` plus `?max-keys=1` for the one-key LIST of an
 * existence check, `?list` for a listing: what a job costs in requests.
 */
export interface RequestLog {
  /** Point the storage here. */
  url: string;
  /** The requests since the last take, in order, the bucket left out of each path. */
  take(): string[];
  stop(): Promise<void>;
}

export async function startRequestLog(target: string): Promise<RequestLog> {
  const upstream = new URL(target);
  const agent = new Agent({ keepAlive: true });
  let seen: string[] = [];
  const server: Server = createServer((req, res) => {
    const [path = '', query = ''] = (req.url ?? '').split('?');
    const params = new URLSearchParams(query);
    const list = params.has('prefix') ? (params.get('max-keys') === '1' ? '?max-keys=1' : '?list') : '';
    // Path-style: /<bucket>/<key>; the key alone reads the same in both layouts' tests.
    const key = decodeURIComponent(path).split('/').slice(2).join('/');
    seen.push(`${req.method} /${key}${list}`);
    const forward = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', (error) => res.destroy(error));
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    take() {
      const taken = seen;
      seen = [];
      return taken;
    },
    async stop() {
      agent.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
