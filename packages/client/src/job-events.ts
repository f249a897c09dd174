import { isFinished, JobStatusSchema, type JobStatus } from '@shepherd/contracts';
import { NetworkError, NotFoundError, ProtocolError, ShepherdError } from './errors';
import { delay, type Transport } from './http';
import { parseSse } from './sse';
import { JobWithIdSchema, type JobEvent } from './types';

export interface EventsOptions {
  /** Resume after this event id (sent as `Last-Event-ID`). */
  lastEventId?: string;
  signal?: AbortSignal;
  /** Without the events route: how often the status is read, in ms; default 1000. */
  pollIntervalMs?: number;
  /** Reconnects in a row without an event before giving up; default 10. */
  maxReconnects?: number;
}

/** The events route answers, or the gateway has none (older gateway): an outcome, not an exception. */
export type EventsOpened = { kind: 'stream'; response: Response } | { kind: 'unsupported' };

const jobPath = (jobId: string) => `/jobs/${encodeURIComponent(jobId)}`;

/**
 * Opens `GET /jobs/{id}/events`. A 404 is either an unknown job or a
 * gateway without the route; the status tells them apart (it 404s only for
 * an unknown job).
 */
export async function openEvents(transport: Transport, jobId: string, lastEventId: string | null, signal?: AbortSignal): Promise<EventsOpened> {
  const query = lastEventId ? `?last_event_id=${encodeURIComponent(lastEventId)}` : '';
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (lastEventId) headers['last-event-id'] = lastEventId;
  try {
    const response = await transport.call(`${jobPath(jobId)}/events${query}`, { headers, signal, retry: 'unavailable' });
    return { kind: 'stream', response };
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    await transport.call(`${jobPath(jobId)}/status`, { signal, retry: 'unavailable' }); // throws NotFoundError for an unknown job
    return { kind: 'unsupported' };
  }
}

/**
 * The events of one job from an opened stream, reconnecting with the last
 * event id when the connection drops before the final status (bounded
 * tries with backoff, reset by every event that arrives). Ends after the
 * final status.
 */
export async function* streamEvents(
  transport: Transport,
  jobId: string,
  first: Response,
  options: Omit<EventsOptions, 'lastEventId'> & { lastEventId: string | null },
): AsyncGenerator<JobEvent> {
  let response: Response | null = first;
  let lastId = options.lastEventId;
  let failures = 0;
  const maxReconnects = options.maxReconnects ?? 10;
  for (;;) {
    try {
      if (!response) {
        const opened = await openEvents(transport, jobId, lastId, options.signal);
        if (opened.kind === 'unsupported') throw new ShepherdError(404, 'The gateway stopped serving job events');
        response = opened.response;
      }
      if (!response.body) throw new NetworkError('The events answer has no body');
      for await (const message of parseSse(response.body, options.signal)) {
        if (message.id !== null) lastId = message.id;
        if (message.event !== 'status' && message.event !== 'progress') continue;
        const status = parseEvent(message.data, response.status);
        failures = 0;
        yield { id: message.id, type: message.event, status };
        if (isFinished(status)) return;
      }
      // The stream ended before a final status: the connection was dropped.
    } catch (error) {
      if (options.signal?.aborted) throw error;
      // A refusal or an unreadable event ends the iterator; anything else
      // (a NetworkError, a 503, fetch's "terminated" while reading) is a
      // dropped line. Errors of fetch may come from another realm (Jest's
      // vm), so they are not told apart by their class.
      if (error instanceof ShepherdError && !(error instanceof NetworkError) && error.status !== 503) throw error;
    }
    response = null;
    failures++;
    if (failures > maxReconnects) throw new NetworkError(`The events of job \`${jobId}\` dropped ${failures} times in a row`);
    await delay(Math.min(5000, 100 * 2 ** failures), options.signal);
  }
}

function parseEvent(data: string, httpStatus: number) {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    throw new ProtocolError(httpStatus, `An event's data is not JSON: ${data.slice(0, 200)}`);
  }
  const result = JobWithIdSchema.safeParse(parsed);
  if (!result.success) throw new ProtocolError(httpStatus, `An event's data is not a job status: ${result.error.message}`);
  return result.data;
}

/**
 * Without the events route: the status read now, then `wait_ready` with a
 * short timeout as the pause between reads, so the final status comes as
 * soon as the gateway knows it. Yields each change.
 */
export async function* pollEvents(transport: Transport, jobId: string, options: EventsOptions): AsyncGenerator<JobEvent> {
  const seconds = (options.pollIntervalMs ?? 1000) / 1000;
  let status = await readStatus(transport, `${jobPath(jobId)}/status`, options.signal);
  let previous: JobStatus | null = null;
  for (;;) {
    if (!previous || JSON.stringify(previous) !== JSON.stringify(status)) {
      const type = previous && previous.status === status.status ? 'progress' : 'status';
      yield { id: null, type, status: { ...status, job_id: jobId } };
      previous = status;
    }
    if (isFinished(status)) return;
    status = await readStatus(transport, `${jobPath(jobId)}/wait_ready?timeout=${seconds}`, options.signal);
  }
}

export async function readStatus(transport: Transport, path: string, signal?: AbortSignal): Promise<JobStatus> {
  const response = await transport.call(path, { signal, retry: 'unavailable' });
  return JobStatusSchema.parse(await response.json());
}
