// The floor's processes, started by floor.ts with fork so that each kind's
// CPU is measured apart, as Shepherd's are: `gateway` (HTTP, the input
// stored, a BullMQ add), `sheep` (a BullMQ worker, concurrency 1: inputs
// staged, one ZeroMQ round trip to its runner, outputs and status stored;
// tells the parent over IPC when a job is done) and `runner` (a no-op runner:
// writes the output, answers DoneMessage). Raw clients only, no Shepherd code.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Queue, Worker, type ConnectionOptions } from 'bullmq';
import { Dealer, Router } from 'zeromq';
import { floorStore, type FloorStorage, type FloorStore } from './floor-store';

export interface FloorNodeOptions {
  redisUrl: string;
  prefix: string;
  queueName: string;
  /** Storage root (filesystem) or this process's staging folder (S3). */
  dir: string;
  storage: FloorStorage;
  /** The runner's endpoint (sheep only). */
  endpoint?: string;
}

const OUTPUT = JSON.stringify({ result: { x: 1 } });
/** Room for the 10 MB payload phase. */
const MAX_BODY = 32 * 1024 * 1024;

export function connection(url: string): ConnectionOptions {
  const parsed = new URL(url);
  return {
    host: parsed.hostname || '127.0.0.1',
    port: Number(parsed.port || 6379),
    username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    db: parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0,
    maxRetriesPerRequest: null,
  };
}

async function gateway(options: FloorNodeOptions): Promise<void> {
  const store = floorStore(options.storage, options.dir);
  await store.prepare();
  const queue = new Queue(options.queueName, { connection: connection(options.redisUrl), prefix: options.prefix });
  queue.on('error', () => undefined); // surfaced through the jobs' timeouts
  await queue.waitUntilReady();
  const server = createServer((req, res) => void receive(req, res, store, queue));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port });
  process.on('disconnect', () => {
    server.closeAllConnections();
    server.close();
    void queue.close().finally(() => process.exit(0));
  });
}

/** The HTTP side: store the input, enqueue, answer 200. */
async function receive(req: IncomingMessage, res: ServerResponse, store: FloorStore, queue: Queue): Promise<void> {
  const answer = (status: number, body: object): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY) return answer(413, { message: 'body too large' });
      chunks.push(chunk);
    }
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { job_id?: unknown; payload?: unknown };
    const { job_id: jobId, payload } = body;
    if (typeof jobId !== 'string' || !/^[a-z][a-z0-9-]{0,62}$/.test(jobId) || typeof payload !== 'string') {
      return answer(400, { message: 'job_id and payload (strings) are required' });
    }
    await store.accept(jobId, payload);
    await queue.add('job', { jobId }, { jobId, removeOnComplete: { count: 10_000 }, removeOnFail: { count: 10_000 } });
    return answer(200, { success: true });
  } catch (error) {
    return answer(500, { message: (error as Error).message });
  }
}

async function sheep(options: FloorNodeOptions): Promise<void> {
  const store = floorStore(options.storage, options.dir);
  const link = new Dealer({ linger: 0 });
  link.connect(options.endpoint ?? '');
  const worker = new Worker<{ jobId: string }>(
    options.queueName,
    async (job) => {
      const { jobId } = job.data;
      try {
        const root = await store.stage(jobId);
        const input = { message: { identity: '', job_id: jobId, message_type: 'InputMessage', io_data_root: root } };
        await link.send(JSON.stringify(input));
        const [frame] = await link.receive();
        const reply = JSON.parse(String(frame)) as { message?: { job_id?: string; message_type?: string } };
        if (reply.message?.message_type !== 'DoneMessage' || reply.message.job_id !== jobId) {
          throw new Error(`runner answered ${String(frame)} for ${jobId}`);
        }
        await store.publish(jobId);
        process.send?.({ type: 'done', jobId });
      } catch (error) {
        process.send?.({ type: 'failed', jobId, message: (error as Error).message });
        throw error;
      }
    },
    { connection: connection(options.redisUrl), prefix: options.prefix, concurrency: 1, autorun: false },
  );
  worker.on('error', () => undefined); // surfaced through the jobs' timeouts
  void worker.run().catch(() => undefined);
  await worker.waitUntilReady();
  process.send?.({ type: 'ready' });
  process.on('disconnect', () => {
    void worker.close().finally(() => {
      link.close();
      process.exit(0);
    });
  });
}

async function runner(): Promise<void> {
  const router = new Router({ linger: 0 });
  await router.bind('tcp://127.0.0.1:*');
  process.send?.({ type: 'ready', endpoint: router.lastEndpoint });
  process.on('disconnect', () => {
    router.close();
    process.exit(0);
  });
  for await (const [identity, frame] of router) {
    if (!identity || !frame) continue;
    const { message } = JSON.parse(String(frame)) as { message: { job_id: string; io_data_root: string } };
    await writeFile(join(message.io_data_root, message.job_id, 'outputs', 'output'), OUTPUT);
    const done = { message: { identity: '', job_id: message.job_id, message_type: 'DoneMessage' } };
    await router.send([identity, JSON.stringify(done)]);
  }
}

if (require.main === module) {
  const [role, json] = process.argv.slice(2);
  const options = JSON.parse(json ?? '{}') as FloorNodeOptions;
  const roles: Record<string, () => Promise<void>> = { gateway: () => gateway(options), sheep: () => sheep(options), runner };
  (roles[role ?? ''] ?? (() => Promise.reject(new Error(`unknown role ${role}`))))().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
