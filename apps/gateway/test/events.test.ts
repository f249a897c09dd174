import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import type { ShepherdConfig } from '@shepherd/config';
import { jobStatus, lifeOf } from '@shepherd/contracts';
import { MAX_EVENTS, StatusEvents } from '@shepherd/queue';
import { uniqueId, waitFor } from '@shepherd/testing';
import { createGateway } from '../src/gateway';
import { compareStreamIds, JobEvents, KEEP_ALIVE_MS } from '../src/jobs/job-events';
import { model, postJson, startGateway, storageSection, type Harness } from './harness';

// GET /jobs/:id/events on a real gateway and Redis, read with a small SSE
// parser over fetch's body.

/** One block of the stream: an event, or a comment (keep-alive). */
interface Block {
  id?: string;
  event?: string;
  data?: string;
  comment?: string;
  /** performance.now() when the block was parsed. */
  at: number;
}

/** Splits a text/event-stream body into blocks as they arrive; `next` is null once the stream ended. */
class SseReader {
  private readonly blocks: Block[] = [];
  private buffer = '';
  private ended = false;
  private wake?: () => void;

  constructor(body: ReadableStream<Uint8Array>) {
    void this.pump(body.getReader());
  }

  private async pump(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = this.buffer.indexOf('\n\n')) >= 0) {
          this.blocks.push(parseBlock(this.buffer.slice(0, end)));
          this.buffer = this.buffer.slice(end + 2);
        }
        this.wake?.();
      }
    } catch {
      // aborted by the test
    }
    this.ended = true;
    this.wake?.();
  }

  /** The next block, or null when the stream ended; throws after `timeoutMs` of silence. */
  async next(timeoutMs = 5000): Promise<Block | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.blocks.length === 0 && !this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no SSE block within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.blocks.shift() ?? null;
  }

  /** The next event, comments skipped. */
  async nextEvent(timeoutMs = 5000): Promise<Block | null> {
    for (;;) {
      const block = await this.next(timeoutMs);
      if (block === null || block.comment === undefined) return block;
    }
  }

  /** Every event until the stream ends. */
  async rest(timeoutMs = 5000): Promise<Block[]> {
    const events: Block[] = [];
    for (let event = await this.nextEvent(timeoutMs); event; event = await this.nextEvent(timeoutMs)) events.push(event);
    return events;
  }
}

function parseBlock(text: string): Block {
  const block: Block = { at: performance.now() };
  for (const line of text.split('\n')) {
    if (line.startsWith(':')) block.comment = line.slice(1).trim();
    const colon = line.indexOf(': ');
    if (colon < 0) continue;
    const [field, value] = [line.slice(0, colon), line.slice(colon + 2)];
    if (field === 'id' || field === 'event' || field === 'data') block[field] = value;
  }
  return block;
}

/** An event in short: its type, state and progress. */
function summary(block: Block): string {
  const data = JSON.parse(block.data ?? '{}') as { status: string; progress?: number | null };
  return `${block.event} ${data.status}${block.event === 'progress' ? ` ${data.progress}` : ''}`;
}

function expectIncreasing(blocks: Block[]): void {
  for (let i = 1; i < blocks.length; i++) expect(compareStreamIds(blocks[i]!.id!, blocks[i - 1]!.id!)).toBe(1);
}

async function open(url: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<SseReader> {
  const response = await fetch(url, { headers, signal });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe('text/event-stream');
  expect(response.headers.get('cache-control')).toBe('no-cache');
  expect(response.headers.get('x-accel-buffering')).toBe('no');
  expect(response.headers.get('content-encoding')).toBeNull();
  return new SseReader(response.body!);
}

const silent = new Writable({ write: (_chunk, _enc, done) => done() });

/** Another gateway process on the same Redis and storage: what a restart comes back as. */
async function sameStackGateway(config: ShepherdConfig): Promise<{ url: string; app: NestExpressApplication }> {
  const app = await createGateway(config, { logDestination: silent });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, app };
}

describe('GET /jobs/:id/events', () => {
  let gw: Harness;
  beforeAll(async () => {
    gw = await startGateway({ storage: storageSection('filesystem') });
  });
  afterAll(async () => gw.close());

  async function submit(): Promise<string> {
    const jobId = uniqueId('job');
    expect((await postJson(`${gw.url}/start-job`, { job_id: jobId, model, payload: 'x' })).status).toBe(200);
    return jobId;
  }

  async function move(jobId: string, to: 'processing' | 'done'): Promise<void> {
    const life = lifeOf((await gw.statuses.read(jobId))!);
    await gw.statuses.write(jobId, to === 'processing' ? jobStatus.processing(life) : jobStatus.done(life));
  }

  it('sends each status change and progress as it happens, then ends after the final status', async () => {
    const jobId = await submit();
    const sse = await open(`${gw.url}/jobs/${jobId}/events`);
    const queued = (await sse.nextEvent())!;
    expect(summary(queued)).toBe('status queued');
    await move(jobId, 'processing');
    expect(summary((await sse.nextEvent())!)).toBe('status processing');
    expect(await gw.statuses.progress(jobId, 0.5, 'half')).toBe(true);
    const progress = (await sse.nextEvent())!;
    expect(summary(progress)).toBe('progress processing 0.5');
    expect(JSON.parse(progress.data!)).toMatchObject({ job_id: jobId, status: 'processing', progress: 0.5, progress_message: 'half', model });
    await move(jobId, 'done');
    const done = (await sse.nextEvent())!;
    expect(JSON.parse(done.data!)).toMatchObject({ job_id: jobId, status: 'done', model });
    expect(await sse.next()).toBeNull();
  });

  it('replays the history first, then live events, with increasing ids', async () => {
    const jobId = await submit();
    await move(jobId, 'processing');
    await gw.statuses.progress(jobId, 0.25, null);
    const sse = await open(`${gw.url}/jobs/${jobId}/events`);
    await gw.statuses.progress(jobId, 0.75, 'nearly');
    await move(jobId, 'done');
    const events = await sse.rest();
    expect(events.map(summary)).toEqual(['status queued', 'status processing', 'progress processing 0.25', 'progress processing 0.75', 'status done']);
    expectIncreasing(events);
    // The stored status stays private: no token name or webhook in the data.
    for (const event of events) expect(JSON.parse(event.data!)).not.toHaveProperty('submitted_by');
  });

  it('misses and doubles nothing when events are written while clients connect', async () => {
    const jobId = await submit();
    await move(jobId, 'processing');
    // A writer that never pauses, so events land between each client's subscribe and its backlog read.
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing && written < 400) await gw.statuses.progress(jobId, (++written % 100) / 100, null);
    })();
    const readers: Array<Promise<Block[]>> = [];
    for (let i = 0; i < 10; i++) {
      const sse = await open(`${gw.url}/jobs/${jobId}/events`);
      readers.push(sse.rest());
    }
    writing = false;
    await writer;
    await move(jobId, 'done');
    const stored = (await gw.statuses.events(jobId, null)).map((event) => event.id);
    expect(stored).toHaveLength(written + 3);
    for (const events of await Promise.all(readers)) expect(events.map((event) => event.id)).toEqual(stored);
  });

  it('replays a stream longer than one read (approximate trimming keeps over MAX_EVENTS)', async () => {
    const jobId = await submit();
    await move(jobId, 'processing');
    for (let i = 0; i < MAX_EVENTS + 60; i++) await gw.statuses.progress(jobId, 0.5, null);
    await move(jobId, 'done');
    const length = await gw.redis.xlen(gw.keys.events(jobId));
    expect(length).toBeGreaterThan(MAX_EVENTS);
    const events = await (await open(`${gw.url}/jobs/${jobId}/events`)).rest();
    expect(events).toHaveLength(length);
    expect(summary(events[events.length - 1]!)).toBe('status done');
    expectIncreasing(events);
  });

  it('resumes after Last-Event-ID (or last_event_id) with exactly the events after it', async () => {
    const jobId = await submit();
    const abort = new AbortController();
    const first = await open(`${gw.url}/jobs/${jobId}/events`, {}, abort.signal);
    await move(jobId, 'processing');
    const seen = [(await first.nextEvent())!, (await first.nextEvent())!];
    expect(seen.map(summary)).toEqual(['status queued', 'status processing']);
    abort.abort();
    // Written while no client listens.
    await gw.statuses.progress(jobId, 0.5, 'half');
    const resumed = await open(`${gw.url}/jobs/${jobId}/events`, { 'last-event-id': seen[1]!.id! });
    expect(summary((await resumed.nextEvent())!)).toBe('progress processing 0.5');
    await move(jobId, 'done');
    const rest = await resumed.rest();
    expect(rest.map(summary)).toEqual(['status done']);

    // Finished now: from the query, after the first event, the rest of the history and the end.
    const replay = await (await open(`${gw.url}/jobs/${jobId}/events?last_event_id=${seen[0]!.id!}`)).rest();
    expect(replay.map(summary)).toEqual(['status processing', 'progress processing 0.5', 'status done']);
    expect(replay[0]!.id).toBe(seen[1]!.id);
    // The header wins over the query; after the last event a finished job ends at once.
    const after = await (await open(`${gw.url}/jobs/${jobId}/events?last_event_id=${seen[0]!.id!}`, { 'last-event-id': rest[0]!.id! })).rest();
    expect(after).toEqual([]);
  });

  it('gives a finished job’s history and ends at once; a job without a stream gets its status as 0-0', async () => {
    const jobId = await submit();
    await move(jobId, 'processing');
    await move(jobId, 'done');
    const started = Date.now();
    const events = await (await open(`${gw.url}/jobs/${jobId}/events`)).rest();
    expect(events.map(summary)).toEqual(['status queued', 'status processing', 'status done']);
    expect(Date.now() - started).toBeLessThan(2000);

    await gw.redis.del(gw.keys.events(jobId));
    const flushed = await (await open(`${gw.url}/jobs/${jobId}/events`)).rest();
    expect(flushed.map((event) => [event.id, summary(event)])).toEqual([['0-0', 'status done']]);
    // A client that had events before the flush gets the status too.
    const resumed = await (await open(`${gw.url}/jobs/${jobId}/events`, { 'last-event-id': events[1]!.id! })).rest();
    expect(resumed.map((event) => [event.id, summary(event)])).toEqual([['0-0', 'status done']]);
  });

  it('answers an unknown or invalid id with 404 and a malformed Last-Event-ID with 400, as JSON', async () => {
    for (const id of [uniqueId('job'), 'not..valid']) {
      const response = await fetch(`${gw.url}/jobs/${id}/events`);
      expect(response.status).toBe(404);
      expect(await response.json()).toEqual({ message: expect.stringContaining('does not exist') });
    }
    const jobId = await submit();
    for (const headers of [{ 'last-event-id': 'abc' }, { 'last-event-id': '12' }]) {
      const response = await fetch(`${gw.url}/jobs/${jobId}/events`, { headers });
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({ message: expect.stringContaining('Last-Event-ID') });
    }
    expect((await fetch(`${gw.url}/jobs/${jobId}/events?last_event_id=1-x`)).status).toBe(400);
  });

  it('sends a keep-alive comment while nothing happens', async () => {
    const feeds = gw.app.get(JobEvents);
    expect(feeds.keepAliveMs).toBe(KEEP_ALIVE_MS);
    feeds.keepAliveMs = 50;
    const events = gw.app.get(StatusEvents);
    const before = events.waiting;
    const abort = new AbortController();
    try {
      const jobId = await submit();
      const sse = await open(`${gw.url}/jobs/${jobId}/events`, {}, abort.signal);
      expect(summary((await sse.next())!)).toBe('status queued');
      for (let i = 0; i < 3; i++) expect(await sse.next(2000)).toMatchObject({ comment: 'keep-alive' });
    } finally {
      feeds.keepAliveMs = KEEP_ALIVE_MS;
      abort.abort();
      await waitFor(() => events.waiting === before, 5000, 'the listener to go');
    }
  });

  it('stops listening when the client goes', async () => {
    const events = gw.app.get(StatusEvents);
    const before = events.waiting;
    const jobId = await submit();
    const abort = new AbortController();
    await open(`${gw.url}/jobs/${jobId}/events`, {}, abort.signal);
    expect(events.waiting).toBe(before + 1);
    abort.abort();
    await waitFor(() => events.waiting === before, 5000, 'the listener to go');
  });

  it('loses nothing across a gateway restart: the client resumes on the new one', async () => {
    const jobId = await submit();
    const first = await sameStackGateway(gw.config);
    const sse = await open(`${first.url}/jobs/${jobId}/events`);
    await move(jobId, 'processing');
    const seen = [(await sse.nextEvent())!, (await sse.nextEvent())!];
    // Shutdown ends the open stream (no final status) instead of waiting for it.
    const closing = Date.now();
    await first.app.close();
    expect(await sse.rest()).toEqual([]);
    expect(Date.now() - closing).toBeLessThan(gw.config.gateway.shutdownGraceMs);
    // While no gateway runs.
    await gw.statuses.progress(jobId, 0.5, 'half');
    await move(jobId, 'done');
    const second = await sameStackGateway(gw.config);
    try {
      const rest = await (await open(`${second.url}/jobs/${jobId}/events`, { 'last-event-id': seen[1]!.id! })).rest();
      expect(rest.map(summary)).toEqual(['progress processing 0.5', 'status done']);
      expectIncreasing([...seen, ...rest]);
    } finally {
      await second.app.close();
    }
  });

  it('measures the time from a progress write to its event (idle gateway)', async () => {
    const jobId = await submit();
    await move(jobId, 'processing');
    const sse = await open(`${gw.url}/jobs/${jobId}/events`);
    expect([summary((await sse.nextEvent())!), summary((await sse.nextEvent())!)]).toEqual(['status queued', 'status processing']);
    const times: number[] = [];
    for (let i = 1; i <= 30; i++) {
      const before = performance.now();
      await gw.statuses.progress(jobId, i / 100, null);
      const event = (await sse.nextEvent())!;
      expect(JSON.parse(event.data!)).toMatchObject({ progress: i / 100 });
      times.push(event.at - before);
    }
    await move(jobId, 'done');
    await sse.rest();
    times.sort((a, b) => a - b);
    const ms = (value: number) => `${value.toFixed(2)} ms`;
    console.log(`progress() → SSE event, ${times.length} runs: min ${ms(times[0]!)}, median ${ms(times[15]!)}, max ${ms(times[times.length - 1]!)}`);
  });
});

describe('compareStreamIds', () => {
  it('compares ids as (ms, seq) numbers, not strings', () => {
    expect(compareStreamIds('10-0', '9-5')).toBe(1);
    expect(compareStreamIds('5-10', '5-9')).toBe(1);
    expect(compareStreamIds('5-9', '5-10')).toBe(-1);
    expect(compareStreamIds('1767225600000-3', '1767225600000-3')).toBe(0);
    expect(compareStreamIds('18446744073709551615-0', '18446744073709551614-9')).toBe(1);
  });
});

describe('GET /jobs/:id/events with API tokens', () => {
  let gw: Harness;
  const tokens = { alice: 'alice-secret-token-00001', bob: 'bob-secret-token-0000001', admin: 'admin-secret-token-00001' };
  const as = (name: keyof typeof tokens) => ({ authorization: `Bearer ${tokens[name]}` });

  beforeAll(async () => {
    gw = await startGateway({
      storage: storageSection('filesystem'),
      auth: {
        tokens: [
          { name: 'alice', token: tokens.alice, scopes: ['submit', 'read'] },
          { name: 'bob', token: tokens.bob, scopes: ['submit', 'read'] },
          { name: 'admin', token: tokens.admin, scopes: ['admin'] },
        ],
      },
    });
  });
  afterAll(async () => gw.close());

  it('shows a job to its own token and admins; another token’s job is 404, no token 401', async () => {
    const jobId = uniqueId('job');
    const started = await fetch(`${gw.url}/start-job`, { method: 'POST', headers: { ...as('alice'), 'content-type': 'application/json' }, body: JSON.stringify({ job_id: jobId, model, payload: 'x' }) });
    expect(started.status).toBe(200);
    const life = lifeOf((await gw.statuses.read(jobId))!);
    await gw.statuses.write(jobId, jobStatus.processing(life));
    await gw.statuses.write(jobId, jobStatus.done(life));

    const bob = await fetch(`${gw.url}/jobs/${jobId}/events`, { headers: as('bob') });
    expect(bob.status).toBe(404);
    expect(bob.headers.get('content-type')).toMatch(/^application\/json/);
    expect((await fetch(`${gw.url}/jobs/${jobId}/events`)).status).toBe(401);
    for (const name of ['alice', 'admin'] as const) {
      const events = await (await open(`${gw.url}/jobs/${jobId}/events`, as(name))).rest();
      expect(events.map(summary)).toEqual(['status queued', 'status processing', 'status done']);
      for (const event of events) expect(JSON.parse(event.data!)).not.toHaveProperty('submitted_by');
    }
  });
});
