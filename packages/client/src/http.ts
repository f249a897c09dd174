import { errorFromResponse, NetworkError, ShepherdError, UnavailableError } from './errors';

/** A request body fetch takes (named here: Node's types have no DOM `BodyInit`). */
export type BodyInit = NonNullable<RequestInit['body']>;

export interface TransportOptions {
  /** The gateway's base URL, e.g. `http://127.0.0.1:5000` (a path prefix is kept). */
  url: string;
  /** Sent as `Authorization: Bearer <token>`; none by default (an open gateway). */
  token?: string;
  /** The fetch to use; default `globalThis.fetch` (Node 20, browsers). */
  fetch?: typeof fetch;
  /** Tries after the first for a retried call (503, network errors); default 5. */
  retries?: number;
  /** First backoff in ms, doubled each try with jitter; default 200. */
  retryDelayMs?: number;
  /** Longest backoff in ms (also caps a `Retry-After`); default 5000. */
  maxRetryDelayMs?: number;
}

/** Which failures a call may retry: none, or 503 and network errors. */
export type RetryPolicy = 'none' | 'unavailable';

export interface CallOptions {
  method?: string;
  body?: BodyInit | null;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  retry?: RetryPolicy;
  /** Answers other than 2xx that are returned instead of thrown (e.g. 202 of a result). */
  accept?: number[];
  /** Told before each retry, with the error that caused it (`submit` notes that its first try may have landed). */
  onRetry?: (error: ShepherdError, attempt: number) => void;
  /** Makes a fresh body for each try (a stream can be read only once). */
  bodyFactory?: () => BodyInit | Promise<BodyInit>;
  /** Extra fetch init (Node's `duplex: 'half'` for streamed bodies). */
  init?: Record<string, unknown>;
}

/** Waits `ms`, or rejects when the signal aborts. */
export const delay = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true });
  });

/** One HTTP exchange with the gateway: base URL, bearer token, typed errors, bounded retries with backoff. */
export class Transport {
  readonly baseUrl: string;
  private readonly fetchFn: typeof fetch;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly maxRetryDelayMs: number;

  constructor(private readonly options: TransportOptions) {
    this.baseUrl = options.url.replace(/\/+$/, '');
    // Bound, so a browser's fetch is not called with another `this`.
    const fetchFn = options.fetch ?? globalThis.fetch;
    this.fetchFn = (input, init) => fetchFn(input, init);
    this.retries = options.retries ?? 5;
    this.retryDelayMs = options.retryDelayMs ?? 200;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 5000;
  }

  url(path: string): string {
    return `${this.baseUrl}${path}`;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.options.token ? { authorization: `Bearer ${this.options.token}`, ...extra } : { ...extra };
  }

  /** Sends the request; answers a 2xx (or an `accept`ed status) Response, else throws a ShepherdError. */
  async call(path: string, options: CallOptions = {}): Promise<Response> {
    const retries = options.retry === 'unavailable' ? this.retries : 0;
    for (let attempt = 0; ; attempt++) {
      let error: ShepherdError;
      const body = options.bodyFactory ? await options.bodyFactory() : (options.body ?? null);
      try {
        const response = await this.fetchFn(this.url(path), {
          method: options.method ?? 'GET',
          headers: this.headers(options.headers),
          body,
          signal: options.signal,
          ...options.init,
        } as RequestInit);
        if (response.ok || options.accept?.includes(response.status)) return response;
        error = await errorFromResponse(response);
      } catch (caught) {
        if (caught instanceof ShepherdError) throw caught;
        if (options.signal?.aborted) throw caught;
        error = new NetworkError(`${options.method ?? 'GET'} ${path}: ${describe(caught)}`, caught);
      }
      const retryable = error instanceof UnavailableError || error instanceof NetworkError;
      if (!retryable || attempt >= retries) throw error;
      options.onRetry?.(error, attempt + 1);
      await delay(this.backoff(attempt, error), options.signal);
    }
  }

  /** Full jitter on an exponential backoff; a `Retry-After` is honoured, within the cap. */
  private backoff(attempt: number, error: ShepherdError): number {
    const exponential = Math.min(this.maxRetryDelayMs, this.retryDelayMs * 2 ** attempt);
    const asked = error instanceof UnavailableError && error.retryAfter !== null ? error.retryAfter * 1000 : 0;
    return Math.min(this.maxRetryDelayMs, Math.max(asked, exponential / 2 + (Math.random() * exponential) / 2));
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}
