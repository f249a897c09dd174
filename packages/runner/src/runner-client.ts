import { randomUUID } from 'node:crypto';
import { Dealer } from 'zeromq';
import { decodeMessage, encodeMessage, MessageDecodeError, PROGRESS_PEER_PREFIX } from './protocol';

export interface RunnerClientOptions {
  /** Host the runner listens on. Default `127.0.0.1`. */
  host?: string;
  /** Port the runner's ROUTER is bound to. */
  port: number;
  /**
   * Told about what the client drops: replies for no job in hand, frames
   * that are not runner messages, a reply of the wrong type, a failing
   * socket. `details` holds the same facts as fields for a structured log
   * (`address`, and `jobId`, `messageType`, `frames`, `error` where known).
   * Default: ignored.
   */
  onWarning?: RunnerWarning;
  /**
   * Told each ProgressMessage for a job in hand (`progress` clamped to 0..1,
   * `message` null when none), as it arrives: coalesce before anything slow.
   * Given, the client announces in its routing id that it takes them
   * (PROGRESS_PEER_PREFIX); runners for the original never send any.
   * Default: none announced, and any that come are dropped.
   */
  onProgress?: RunnerProgress;
}

export type RunnerProgress = (jobId: string, progress: number, message: string | null) => void;

export type RunnerWarning = (message: string, details?: Record<string, unknown>) => void;

export type RunnerResult =
  | { kind: 'done' }
  | { kind: 'error'; message: string; exceptionType: string; exceptionTraceback: string };

export type RunnerClientErrorCode = 'not-listening' | 'aborted' | 'closed' | 'duplicate-job' | 'send-failed';

/** A failure of the link to the runner rather than of a job. */
export class RunnerClientError extends Error {
  constructor(
    message: string,
    readonly code: RunnerClientErrorCode,
  ) {
    super(message);
    this.name = 'RunnerClientError';
  }
}

interface Pending {
  resolve: (result: RunnerResult) => void;
  reject: (error: Error) => void;
}

/**
 * The sheep's end of the runner protocol: a DEALER connected to the runner's
 * ROUTER. Use one client per runner process: messages still queued when a
 * runner dies would otherwise reach the next runner on the same port.
 */
export class RunnerClient {
  readonly address: string;
  private readonly socket: Dealer;
  private readonly pending = new Map<string, Pending>();
  private readonly listeningWaiters = new Set<() => void>();
  private readonly onWarning: RunnerWarning;
  private readonly onProgress?: RunnerProgress;
  /** zeromq v6 allows one send in flight per socket, so sends are chained. */
  private sendChain: Promise<void> = Promise.resolve();
  private connected = false;
  private handshaken = false;

  constructor(options: RunnerClientOptions) {
    this.address = `tcp://${options.host ?? '127.0.0.1'}:${options.port}`;
    this.onWarning = options.onWarning ?? (() => undefined);
    this.onProgress = options.onProgress;
    this.socket = new Dealer({ linger: 0, ...(options.onProgress && { routingId: `${PROGRESS_PEER_PREFIX}${randomUUID()}` }) });
    void this.watchEvents();
  }

  get closed(): boolean {
    return this.socket.closed;
  }

  /** Outstanding submits. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Starts connecting (ZeroMQ retries in the background until a runner listens). */
  connect(): void {
    if (this.connected) return;
    if (this.socket.closed) throw new RunnerClientError(`Runner client for ${this.address} is closed`, 'closed');
    this.connected = true;
    this.socket.connect(this.address);
    void this.receiveLoop();
  }

  /** Resolves once a runner is listening and the ZeroMQ handshake with it is done. */
  waitListening(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.socket.closed) {
      return Promise.reject(new RunnerClientError(`Runner client for ${this.address} is closed`, 'closed'));
    }
    if (this.handshaken) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(this.abortError());
    return new Promise<void>((resolve, reject) => {
      const finish = (error?: Error): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.listeningWaiters.delete(wake);
        if (error) reject(error);
        else resolve();
      };
      const wake = (): void => finish(this.socket.closed ? this.closedError() : undefined);
      const onAbort = (): void => finish(this.abortError());
      const timer = setTimeout(
        () => finish(new RunnerClientError(`No runner listening at ${this.address} after ${timeoutMs} ms`, 'not-listening')),
        timeoutMs,
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      this.listeningWaiters.add(wake);
    });
  }

  /** Hands a job to the runner; resolves with its DoneMessage or ErrorMessage. */
  submit(jobId: string, ioDataRoot: string): Promise<RunnerResult> {
    if (this.socket.closed) return Promise.reject(this.closedError());
    if (!this.connected) {
      return Promise.reject(new RunnerClientError(`Runner client for ${this.address} is not connected`, 'closed'));
    }
    if (this.pending.has(jobId)) {
      return Promise.reject(new RunnerClientError(`Job ${jobId} is already in the runner at ${this.address}`, 'duplicate-job'));
    }
    const frame = encodeMessage({ message_type: 'InputMessage', job_id: jobId, io_data_root: ioDataRoot });
    let entry: Pending | undefined;
    const result = new Promise<RunnerResult>((resolve, reject) => {
      entry = { resolve, reject };
      this.pending.set(jobId, entry);
    });
    this.sendChain = this.sendChain.then(async () => {
      // Failed or closed meanwhile: do not leave it queued for a runner that may come later.
      if (this.socket.closed || this.pending.get(jobId) !== entry) return;
      try {
        await this.socket.send(frame);
      } catch (error) {
        this.settle(jobId, (p) =>
          p.reject(new RunnerClientError(`Cannot send job ${jobId} to ${this.address}: ${String(error)}`, 'send-failed')),
        );
      }
    });
    return result;
  }

  /** Rejects every outstanding submit, e.g. when the runner process died. */
  failAll(error: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(error);
  }

  /** Closes the socket at once (linger 0) and rejects what is outstanding. */
  close(): void {
    if (this.socket.closed) return;
    this.socket.close();
    this.failAll(this.closedError());
    for (const wake of this.listeningWaiters) wake();
  }

  /**
   * 'handshake' (not 'connect', which any TCP listener triggers) means a ZeroMQ
   * peer answered. Watched from the start so that one before waitListening()
   * counts. Iterated rather than `events.on()`: zeromq patches the emitter
   * onto the native Observer once per process, which breaks under Jest's
   * per-file module registries.
   */
  private async watchEvents(): Promise<void> {
    try {
      for await (const event of this.socket.events) {
        if (event.type === 'handshake') {
          this.handshaken = true;
          for (const wake of this.listeningWaiters) wake();
        } else if (event.type === 'disconnect') {
          this.handshaken = false;
        }
      }
    } catch (error) {
      if (!this.socket.closed) this.warn(`Watching ${this.address} failed: ${String(error)}`, { error: String(error) });
    }
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.socket) this.handleReply(frames);
    } catch (error) {
      // A receive pending when the socket closes rejects (EAGAIN in zeromq 6.8); anything else is a warning.
      if (!this.socket.closed) this.warn(`Receiving from ${this.address} failed: ${String(error)}`, { error: String(error) });
    }
  }

  private handleReply(frames: Buffer[]): void {
    const [frame] = frames;
    if (frames.length !== 1 || !frame) {
      this.warn(`Ignored a reply of ${frames.length} frames from ${this.address}`, { frames: frames.length });
      return;
    }
    let message;
    try {
      message = decodeMessage(frame);
    } catch (error) {
      if (!(error instanceof MessageDecodeError)) throw error;
      this.warn(`Ignored a reply from ${this.address}: ${error.message}`, { error: error.message });
      return;
    }
    if (message.message_type === 'InputMessage') {
      this.warn(`Ignored an InputMessage from the runner at ${this.address} (job ${message.job_id})`, {
        jobId: message.job_id,
        messageType: message.message_type,
      });
      return;
    }
    if (message.message_type === 'ProgressMessage') {
      if (!this.pending.has(message.job_id)) {
        this.warn(`Ignored a ProgressMessage for unknown job ${message.job_id} from ${this.address}`, {
          jobId: message.job_id,
          messageType: message.message_type,
        });
      } else if (this.onProgress) {
        try {
          this.onProgress(message.job_id, message.progress, message.message);
        } catch (error) {
          this.warn(`onProgress failed for job ${message.job_id}: ${String(error)}`, { jobId: message.job_id, error: String(error) });
        }
      }
      return;
    }
    const known = this.settle(message.job_id, (p) =>
      p.resolve(
        message.message_type === 'DoneMessage'
          ? { kind: 'done' }
          : {
              kind: 'error',
              message: message.message,
              exceptionType: message.exception_type,
              exceptionTraceback: message.exception_traceback,
            },
      ),
    );
    if (!known) {
      this.warn(`Ignored a ${message.message_type} for unknown job ${message.job_id} from ${this.address}`, {
        jobId: message.job_id,
        messageType: message.message_type,
      });
    }
  }

  /** A throwing callback must not end the receive loop: a warning is never worth the jobs in hand. */
  private warn(message: string, details: Record<string, unknown>): void {
    try {
      this.onWarning(message, { address: this.address, ...details });
    } catch {
      // ignored: see above
    }
  }

  private settle(jobId: string, action: (p: Pending) => void): boolean {
    const p = this.pending.get(jobId);
    if (!p) return false;
    this.pending.delete(jobId);
    action(p);
    return true;
  }

  private closedError(): RunnerClientError {
    return new RunnerClientError(`Runner client for ${this.address} was closed`, 'closed');
  }

  private abortError(): RunnerClientError {
    return new RunnerClientError(`Waiting for a runner at ${this.address} was aborted`, 'aborted');
  }
}
