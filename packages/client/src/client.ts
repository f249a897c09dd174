import { isFinished, modelKey, type JobStatus } from '@shepherd/contracts';
import { countBytes, Download } from './download';
import { ConflictError, JobFailedError, NotReadyError, ShepherdError } from './errors';
import { Transport, type BodyInit, type TransportOptions } from './http';
import { openEvents, pollEvents, readStatus, streamEvents, type EventsOptions } from './job-events';
import {
  JobListSchema,
  newJobId,
  parseModel,
  type InputBody,
  type JobEvent,
  type JobInput,
  type JobList,
  type JobWithId,
  type ListQuery,
  type ProgressListener,
  type SubmitRequest,
} from './types';

export type ClientOptions = TransportOptions;

export interface CallSignal {
  signal?: AbortSignal;
}

export interface TransferOptions extends CallSignal {
  onProgress?: ProgressListener;
}

export interface WaitOptions extends CallSignal {
  /** Give up waiting after this many ms and answer the status as it is then; default: wait as long as the job takes. */
  timeoutMs?: number;
  /** Told of every event while waiting (status changes, runner progress). */
  onEvent?: (event: JobEvent) => void;
  /** Longest single `wait_ready` request when the gateway has no events route, in seconds; default 60. */
  waitChunkSeconds?: number;
}

const jobPath = (jobId: string) => `/jobs/${encodeURIComponent(jobId)}`;
/** Each segment encoded, the slashes kept: `a b/c.txt` → `a%20b/c.txt`. */
const filePath = (path: string) => path.split('/').map(encodeURIComponent).join('/');

/**
 * The Shepherd HTTP API over `fetch`: Node 20 and browsers alike (nothing
 * here imports from `node:`; file helpers live in `@shepherd/client/node`).
 */
export class ShepherdClient {
  private readonly transport: Transport;

  constructor(options: ClientOptions) {
    this.transport = new Transport(options);
  }

  get url(): string {
    return this.transport.baseUrl;
  }

  /**
   * Uploads `inputs` (if any), then starts the job; answers its id.
   * The start is retried on 503 and network errors with backoff.
   */
  async submit(request: SubmitRequest, options: TransferOptions = {}): Promise<string> {
    const { inputs = [], job_id, model: named, ...rest } = request;
    const jobId = job_id ?? newJobId();
    const model = parseModel(named);
    for (const input of inputs) await this.uploadInput(jobId, input, options);
    const body = JSON.stringify({ ...dropUndefined(rest), job_id: jobId, model });
    let retried = false;
    try {
      await this.transport.call('/start-job', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: options.signal,
        retry: 'unavailable',
        onRetry: () => (retried = true),
      });
    } catch (error) {
      // A 409 on a retry may be our own first try: the connection can drop
      // after the gateway queued the job but before its answer arrived, and
      // then the retry finds the id taken. It is ours when a job with that id
      // and model exists; a first-try 409 is always someone else's job.
      if (!(error instanceof ConflictError) || !retried) throw error;
      const existing = await this.status(jobId, options).catch(() => null);
      if (!existing || modelKey(existing.model) !== modelKey(model)) throw error;
    }
    return jobId;
  }

  /** Uploads one input file (`PUT /jobs/{id}/inputs/{path}`) before the job starts; answers `inputs/<path>`. */
  async uploadInput(jobId: string, input: JobInput, options: TransferOptions = {}): Promise<string> {
    const file = `inputs/${input.path}`;
    const makeBody = async (): Promise<{ body: BodyInit; size: number | null; streamed: boolean }> => {
      const raw = typeof input.body === 'function' ? await input.body() : input.body;
      const size = input.size ?? sizeOf(raw);
      if (raw instanceof ReadableStream) {
        const body = options.onProgress ? raw.pipeThrough(countBytes(file, size, options.onProgress)) : raw;
        return { body, size, streamed: true };
      }
      return { body: raw as BodyInit, size, streamed: false };
    };
    // A bare stream is read once: only a body factory (or bytes) can be sent again.
    const retry = typeof input.body === 'function' || !(input.body instanceof ReadableStream) ? 'unavailable' : 'none';
    const first = await makeBody();
    let unused: typeof first | null = first;
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (first.size !== null) headers['content-length'] = String(first.size);
    const response = await this.transport.call(`${jobPath(jobId)}/inputs/${filePath(input.path)}`, {
      method: 'PUT',
      headers,
      retry,
      signal: options.signal,
      // Node's fetch sends a stream only with `duplex: 'half'`; browsers ignore the key.
      init: { duplex: 'half' },
      // The body made above goes out first; a retry makes a fresh one.
      bodyFactory: async () => {
        const made = unused ?? (await makeBody());
        unused = null;
        return made.body;
      },
    });
    const answer = (await response.json()) as { file?: unknown };
    if (!first.streamed && options.onProgress && first.size !== null) {
      options.onProgress({ file, loaded: first.size, total: first.size, done: true });
    }
    return typeof answer.file === 'string' ? answer.file : file;
  }

  async status(jobId: string, options: CallSignal = {}): Promise<JobStatus> {
    return readStatus(this.transport, `${jobPath(jobId)}/status`, options.signal);
  }

  /** One `wait_ready` call: the status once the job finished, or as it is after `timeoutSeconds`. */
  async waitReady(jobId: string, options: CallSignal & { timeoutSeconds?: number } = {}): Promise<JobStatus> {
    const query = options.timeoutSeconds !== undefined ? `?timeout=${options.timeoutSeconds}` : '';
    return readStatus(this.transport, `${jobPath(jobId)}/wait_ready${query}`, options.signal);
  }

  /**
   * Waits for the job to finish and answers its final status (or, after
   * `timeoutMs`, the status as it is then). Follows the events stream; on a
   * gateway without it, `wait_ready` (polled once a second with `onEvent`,
   * so progress is seen).
   */
  async wait(jobId: string, options: WaitOptions = {}): Promise<JobStatus> {
    const timer = new AbortController();
    const stop = () => timer.abort();
    options.signal?.addEventListener('abort', stop, { once: true });
    const deadline = options.timeoutMs !== undefined ? Date.now() + options.timeoutMs : Infinity;
    const timeout = options.timeoutMs !== undefined ? setTimeout(stop, options.timeoutMs) : undefined;
    try {
      const opened = await openEvents(this.transport, jobId, null, timer.signal);
      if (opened.kind === 'stream') {
        for await (const event of streamEvents(this.transport, jobId, opened.response, { signal: timer.signal, lastEventId: null })) {
          options.onEvent?.(event);
          if (isFinished(event.status)) return withoutId(event.status);
        }
      }
      if (options.onEvent) {
        // Someone watches: poll, so runner progress shows without the stream.
        for await (const event of pollEvents(this.transport, jobId, { signal: timer.signal })) {
          options.onEvent(event);
          if (isFinished(event.status)) return withoutId(event.status);
        }
      }
      const chunk = options.waitChunkSeconds ?? 60;
      for (;;) {
        const left = (deadline - Date.now()) / 1000;
        const status = await this.waitReady(jobId, { signal: timer.signal, timeoutSeconds: Math.max(0, Math.min(chunk, left)) });
        if (isFinished(status) || left <= chunk) return status;
      }
    } catch (error) {
      // Our own timer, not the caller's signal: the answer is the status as it is now.
      if (timer.signal.aborted && !options.signal?.aborted) return this.status(jobId);
      throw error;
    } finally {
      clearTimeout(timeout);
      options.signal?.removeEventListener('abort', stop);
    }
  }

  /** The job's events, ending after its final status; by polling on a gateway without the events route. */
  async *events(jobId: string, options: EventsOptions = {}): AsyncGenerator<JobEvent> {
    const lastEventId = options.lastEventId ?? null;
    const opened = await openEvents(this.transport, jobId, lastEventId, options.signal);
    if (opened.kind === 'unsupported') yield* pollEvents(this.transport, jobId, options);
    else yield* streamEvents(this.transport, jobId, opened.response, { ...options, lastEventId });
  }

  /**
   * A file of the job's `outputs/` (default `output`), streamed. Throws
   * NotReadyError while the job runs, JobFailedError if it failed,
   * ConflictError if it was cancelled.
   */
  async result(jobId: string, file?: string, options: TransferOptions = {}): Promise<Download> {
    const path = `${jobPath(jobId)}/result${file ? `/${filePath(file)}` : ''}`;
    let response: Response;
    try {
      response = await this.transport.call(path, { signal: options.signal, retry: 'unavailable', accept: [202] });
    } catch (error) {
      // The gateway answers a failed job's result with 500 and the job's error.
      if (error instanceof ShepherdError && error.status === 500) throw new JobFailedError(jobId, error.message);
      throw error;
    }
    if (response.status === 202) {
      await response.body?.cancel();
      throw new NotReadyError(jobId);
    }
    return new Download(`outputs/${file ?? 'output'}`, response, options.onProgress);
  }

  /** A file of the job's `inputs/` (default `input`), streamed. */
  async input(jobId: string, file?: string, options: TransferOptions = {}): Promise<Download> {
    const path = `${jobPath(jobId)}/input${file ? `/${filePath(file)}` : ''}`;
    const response = await this.transport.call(path, { signal: options.signal, retry: 'unavailable' });
    return new Download(`inputs/${file ?? 'input'}`, response, options.onProgress);
  }

  /** Cancels a queued or running job; ConflictError when it finished already. */
  async cancel(jobId: string, options: CallSignal = {}): Promise<void> {
    await this.transport.call(`${jobPath(jobId)}/cancel`, { method: 'POST', signal: options.signal });
  }

  /** Deletes a finished job's inputs, outputs and records; ConflictError while it is queued or running. */
  async delete(jobId: string, options: CallSignal = {}): Promise<void> {
    await this.transport.call(jobPath(jobId), { method: 'DELETE', signal: options.signal });
  }

  /** One page of jobs, newest first. */
  async list(query: ListQuery = {}, options: CallSignal = {}): Promise<JobList> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const search = params.size > 0 ? `?${params}` : '';
    const response = await this.transport.call(`/jobs${search}`, { signal: options.signal, retry: 'unavailable' });
    return JobListSchema.parse(await response.json());
  }

  /** Every job matching the query, page after page. */
  async *listAll(query: Omit<ListQuery, 'cursor'> = {}, options: CallSignal = {}): AsyncGenerator<JobWithId> {
    let cursor: string | undefined;
    do {
      const page = await this.list({ ...query, cursor }, options);
      yield* page.jobs;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /** Whether the gateway process answers (`/health`, no token needed). */
  async health(options: CallSignal = {}): Promise<boolean> {
    const response = await this.transport.call('/health', { signal: options.signal });
    return response.ok;
  }
}

function sizeOf(body: InputBody): number | null {
  if (typeof body === 'string') return new TextEncoder().encode(body).byteLength;
  if (body instanceof Uint8Array || body instanceof ArrayBuffer) return body.byteLength;
  if (typeof Blob !== 'undefined' && body instanceof Blob) return body.size;
  return null;
}

function dropUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function withoutId(status: JobWithId): JobStatus {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- the status as /status answers it
  const { job_id, ...rest } = status;
  return rest;
}
