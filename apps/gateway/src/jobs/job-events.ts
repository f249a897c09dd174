import { Inject, Injectable, type BeforeApplicationShutdown } from '@nestjs/common';
import type { ShepherdConfig } from '@shepherd/config';
import { isFinished, publicStatus, type JobStatus } from '@shepherd/contracts';
import { MAX_EVENTS, StatusEvents, StatusStore, type RedisClient } from '@shepherd/queue';
import type { Principal } from '../auth/principal';
import { CONFIG, SUBSCRIBER } from '../core/tokens';
import { JobsService } from './jobs.service';

/** How often an idle event stream sends a comment, so proxies and clients keep it open. */
export const KEEP_ALIVE_MS = 15_000;

/** The id of the one status event sent for a job whose event stream is gone (an old job, a Redis flush). */
export const NO_STREAM_ID = '0-0';

/** A client this far behind (bytes queued on its socket) is cut off; it resumes with Last-Event-ID. */
const MAX_QUEUED_BYTES = 1 << 20;

/**
 * Reads of MAX_EVENTS a backlog may take: the stream is trimmed to about
 * MAX_EVENTS (approximately: it may hold a few hundred more), so two
 * suffice; the bound only caps memory should trimming ever fail.
 */
const MAX_BACKLOG_READS = 4;

/** A Redis stream id as the client sends it back: `<ms>-<seq>`. */
const STREAM_ID = /^\d{1,20}-\d{1,20}$/;

export function isStreamId(id: string): boolean {
  return STREAM_ID.test(id);
}

/** Stream ids compare as (ms, seq) pairs of numbers: `10-0` comes after `9-5`. */
export function compareStreamIds(a: string, b: string): number {
  const [aMs, aSeq] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bMs, bSeq] = b.split('-').map(BigInt) as [bigint, bigint];
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

interface FeedEvent {
  /** Null for an announcement without an id (an older publisher): sent, but not a place to resume from. */
  id: string | null;
  type: 'status' | 'progress';
  status: JobStatus;
}

/** Where a feed writes: the HTTP response, its headers sent. */
export interface FeedSink {
  write(chunk: string): unknown;
  end(): unknown;
  readonly writableLength: number;
}

/**
 * Opens the event feeds of `GET /jobs/:id/events` and ends those still open
 * at shutdown (their clients resume elsewhere with Last-Event-ID).
 */
@Injectable()
export class JobEvents implements BeforeApplicationShutdown {
  /** Milliseconds between keep-alive comments on an idle stream. Default 15 s. */
  keepAliveMs = KEEP_ALIVE_MS;
  private readonly feeds = new Set<JobFeed>();
  private closing = false;

  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    private readonly statuses: StatusStore,
    private readonly events: StatusEvents,
    private readonly jobs: JobsService,
    @Inject(SUBSCRIBER) subscriber: RedisClient,
  ) {
    // Events published while the subscription is down are never delivered:
    // end the open streams, and their clients resume from the Redis stream
    // with Last-Event-ID, which holds everything.
    const closeAll = () => {
      for (const feed of [...this.feeds]) feed.close();
    };
    subscriber.on('close', closeAll);
    // A Cluster moves its subscription to another node when one leaves, without a 'close'.
    subscriber.on('-node', closeAll);
  }

  /**
   * Listens to the job's live events, then checks access (404 like
   * /status) and reads what the stream holds after `afterId`. Throws before
   * anything is written, so errors answer as JSON; the feed is sent by
   * `start`. Aborting `gone` (the client left) closes it.
   */
  async follow(jobId: string, afterId: string | null, principal: Principal, gone: AbortSignal): Promise<OpenFeed> {
    const feed = new JobFeed(jobId, afterId, this.config.debug, this.keepAliveMs);
    // Listen first: an event written while the backlog is read is buffered, not missed.
    const stop = this.events.listen(jobId, (status, event) => feed.push({ id: event.id ?? null, type: event.type, status }));
    const onGone = () => feed.close();
    gone.addEventListener('abort', onGone);
    this.feeds.add(feed);
    feed.onClose(() => {
      stop();
      gone.removeEventListener('abort', onGone);
      this.feeds.delete(feed);
    });
    try {
      const current = await this.jobs.status(jobId, principal);
      const backlog: FeedEvent[] = await this.backlog(jobId, afterId);
      if (backlog.length === 0 && afterId !== NO_STREAM_ID && !(await this.hasStream(jobId, afterId))) {
        // Nothing to replay: the current status stands for the history.
        backlog.push({ id: NO_STREAM_ID, type: 'status', status: current });
      }
      // The stream was read after the status: when that was final, its final event was sent by now or before.
      const ended = isFinished(current);
      if (gone.aborted || this.closing) feed.close();
      return { start: (sink: FeedSink) => feed.start(sink, backlog, ended), close: () => feed.close() };
    } catch (error) {
      feed.close();
      throw error;
    }
  }

  beforeApplicationShutdown(): void {
    this.closing = true;
    for (const feed of [...this.feeds]) feed.close();
  }

  /** The whole stream after `afterId`: a read stops at MAX_EVENTS, the trimmed stream may hold more. */
  private async backlog(jobId: string, afterId: string | null): Promise<FeedEvent[]> {
    const events: FeedEvent[] = [];
    let cursor = afterId;
    for (let read = 0; read < MAX_BACKLOG_READS; read++) {
      const page = await this.statuses.events(jobId, cursor, MAX_EVENTS);
      events.push(...page);
      if (page.length < MAX_EVENTS) break;
      cursor = page[page.length - 1]!.id;
    }
    return events;
  }

  private async hasStream(jobId: string, afterId: string | null): Promise<boolean> {
    if (afterId === null) return false; // read whole, and empty
    return (await this.statuses.events(jobId, null, 1)).length > 0;
  }
}

export interface OpenFeed {
  /** Sends the backlog, then the live events; ends after a final status. */
  start(sink: FeedSink): void;
  close(): void;
}

/**
 * One client's feed: the backlog first, then live events buffered
 * meanwhile, each sent once and in id order (ids at or before the last one
 * sent are dropped), ended by a final status, the client leaving or
 * shutdown.
 */
class JobFeed {
  private lastId: string | null;
  /** Live events that arrive before the backlog is sent; null once it is. */
  private pending: FeedEvent[] | null = [];
  private sink: FeedSink | null = null;
  private keepAlive?: NodeJS.Timeout;
  private closed = false;
  private readonly cleanups: Array<() => void> = [];

  constructor(
    private readonly jobId: string,
    afterId: string | null,
    private readonly debug: boolean,
    private readonly keepAliveMs: number,
  ) {
    this.lastId = afterId;
  }

  onClose(cleanup: () => void): void {
    this.cleanups.push(cleanup);
  }

  push(event: FeedEvent): void {
    if (this.closed) return;
    if (this.pending) this.pending.push(event);
    else this.send(event);
  }

  start(sink: FeedSink, backlog: FeedEvent[], ended: boolean): void {
    this.sink = sink;
    if (this.closed) {
      sink.end();
      return;
    }
    for (const event of backlog) {
      // The no-stream stand-in goes out even after a client's later id: it is all there is.
      if (event.id === NO_STREAM_ID) this.write(event);
      else this.send(event);
    }
    const buffered = this.pending ?? [];
    this.pending = null;
    for (const event of buffered) this.send(event);
    if (ended) this.close();
    if (this.closed) return;
    this.keepAlive = setInterval(() => this.sink?.write(': keep-alive\n\n'), this.keepAliveMs);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepAlive);
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    this.sink?.end();
  }

  private send(event: FeedEvent): void {
    if (event.id !== null && this.lastId !== null && compareStreamIds(event.id, this.lastId) <= 0) return;
    this.write(event);
  }

  private write(event: FeedEvent): void {
    if (this.closed || !this.sink) return;
    const data = JSON.stringify({ job_id: this.jobId, ...publicStatus(event.status, this.debug) });
    this.sink.write(`${event.id === null ? '' : `id: ${event.id}\n`}event: ${event.type}\ndata: ${data}\n\n`);
    if (event.id !== null && (this.lastId === null || compareStreamIds(event.id, this.lastId) > 0)) this.lastId = event.id;
    if (isFinished(event.status) || this.sink.writableLength > MAX_QUEUED_BYTES) this.close();
  }
}
