// The events route is being added to the gateway; until it lands, this
// serves its contract (`id`/`event`/`data` with the status and `job_id`,
// `: keep-alive` comments, `Last-Event-ID` on reconnect, the stream ending
// after a final status) from a plain HTTP server, to check the parser and
// the reconnection over real sockets.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from '@jest/globals';
import { parseSse, ShepherdClient, type JobEvent } from '../src';

const model = { name: 'echo', version: 'v1' };
const status = (state: string, extra: Record<string, unknown> = {}) => ({ job_id: 'job1', status: state, model, ...extra });
const frame = (id: number, event: string, data: unknown) => `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

let server: Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  server = createServer(handler);
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

describe('job events over Server-Sent Events', () => {
  it('parses frames split anywhere, CRLF lines, comments and multi-line data', async () => {
    const text = ': keep-alive\r\nid: 7\r\nevent: status\r\ndata: {"a":\r\ndata: 1}\r\n\r\n: keep-alive\n\ndata: x\n\n';
    const bytes = new TextEncoder().encode(text);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 3) controller.enqueue(bytes.slice(i, i + 3));
        controller.close();
      },
    });
    const messages = [];
    for await (const message of parseSse(body)) messages.push(message);
    expect(messages).toEqual([
      { id: '7', event: 'status', data: '{"a":\n1}' },
      { id: '7', event: 'message', data: 'x' },
    ]);
  });

  it('reconnects with Last-Event-ID after a dropped connection and ends after the final status', async () => {
    const asked: Array<string | undefined> = [];
    const url = await serve((req, res) => {
      asked.push(req.headers['last-event-id'] as string | undefined);
      expect(req.headers.authorization).toBe('Bearer secret-token');
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (asked.length === 1) {
        res.write(': keep-alive\n\n');
        res.write(frame(1, 'status', status('queued')));
        res.write(frame(2, 'progress', status('processing', { progress: 0.5, progress_message: 'half' })));
        res.write('id: 3\nevent: status\ndata: {"cut'); // the line drops mid-event
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      res.write(frame(3, 'status', status('done')));
      res.write(frame(4, 'status', status('done'))); // never read: the iterator ended
      res.end();
    });
    const client = new ShepherdClient({ url, token: 'secret-token' });
    const events: JobEvent[] = [];
    for await (const event of client.events('job1')) events.push(event);
    expect(events.map((e) => [e.id, e.type, e.status.status])).toEqual([
      ['1', 'status', 'queued'],
      ['2', 'progress', 'processing'],
      ['3', 'status', 'done'],
    ]);
    expect(events[1]?.status.progress).toBe(0.5);
    expect(asked).toEqual([undefined, '2']);
  });

  it('waits on the stream when the gateway has it, telling each event', async () => {
    const url = await serve((req, res) => {
      expect(new URL(req.url ?? '', 'http://x').pathname).toBe('/jobs/job1/events');
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(frame(1, 'status', status('processing')));
      setTimeout(() => res.end(frame(2, 'status', status('failed', { error_details: { message: 'boom' } }))), 50);
    });
    const seen: string[] = [];
    const final = await new ShepherdClient({ url }).wait('job1', { onEvent: (e) => seen.push(e.status.status) });
    expect(final).toEqual({ status: 'failed', model, error_details: { message: 'boom' } });
    expect(seen).toEqual(['processing', 'failed']);
  });
});
