import { join } from 'node:path';
import { Router } from 'zeromq';
import { decodeMessage, encodeMessage, PROGRESS_MESSAGE_MAX, takesProgress, type RunnerMessageInput } from './protocol';

/** The original's names for the two folders of a job under `io_data_root/<job_id>/`. */
export const INPUT_DIR = 'inputs';
export const OUTPUT_DIR = 'outputs';

/**
 * A runner keeps a model loaded and processes one job at a time. Subclass it,
 * export the class (default export or `Runner`) and start it with
 * `shepherd-runner [-p PORT] CONFIG_PATH`.
 */
export abstract class BaseRunner {
  constructor(
    /** The parsed config file (YAML). */
    readonly config: unknown,
    /** Path of the config file, e.g. to find model files beside it. */
    readonly configPath: string,
  ) {}

  /** Loads the model. Awaited before the runner listens, so a sheep sees it only once it is ready. */
  load?(): Promise<void>;

  /** Reads `inputDir`, writes results to `outputDir`. A throw becomes the job's ErrorMessage. */
  abstract processJob(inputDir: string, outputDir: string, jobId: string): Promise<void> | void;

  /**
   * Reports how far the job in hand is, e.g. `this.progress(0.4, 'epoch 2')`:
   * `fraction` 0..1 (clamped), `message` cut to 1,000 characters. Sent at
   * once, without waiting, and ahead of the job's answer. Does nothing
   * outside processJob, or for a sheep that does not take progress (the
   * original's). The sheep keeps only the latest few a second, so there is
   * no point calling it more often.
   */
  progress(fraction: number, message?: string | null): void {
    jobsInHand.get(this)?.(fraction, message ?? null);
  }
}

/** The job each serving runner has in hand, as where its progress goes. */
const jobsInHand = new WeakMap<BaseRunner, (fraction: number, message: string | null) => void>();

export interface ServeOptions {
  /** Port to bind the ROUTER to. */
  port: number;
  /** Interface to bind. Default `0.0.0.0`, as the original. */
  host?: string;
  /** Aborting stops the runner like SIGTERM: no new job is taken, the one in hand finishes. */
  signal?: AbortSignal;
  /** Stop on SIGTERM and SIGINT. Default true. */
  handleSignals?: boolean;
  /** Log lines. Default: stderr. */
  log?: (line: string) => void;
}

/** How long replies still queued may take to leave when the runner stops. */
const CLOSE_LINGER_MS = 2000;

/**
 * Loads the runner, binds a ROUTER and answers InputMessages one at a time in
 * arrival order (the socket's queue holds the rest). Resolves once stopped and
 * the socket is closed.
 */
export async function serveRunner(runner: BaseRunner, options: ServeOptions): Promise<void> {
  const log = options.log ?? ((line: string) => process.stderr.write(`[shepherd-runner] ${line}\n`));
  const address = `tcp://${options.host ?? '0.0.0.0'}:${options.port}`;
  let stopping = false;
  let busy = false;
  let router: Router | undefined;

  const stop = (why: string): void => {
    if (stopping) {
      log(`${why}: already stopping, the job in hand still finishes`);
      return;
    }
    stopping = true;
    log(`${why}: stopping${busy ? ' after the job in hand' : ''}`);
    // Idle: closing ends the pending receive. Busy: the loop closes after the job.
    if (!busy) router?.close();
  };
  const onSignal = (signal: NodeJS.Signals): void => stop(signal);
  const onAbort = (): void => stop('aborted');
  if (options.handleSignals ?? true) {
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) stopping = true;

  try {
    if (runner.load && !stopping) {
      log('loading');
      await runner.load();
    }
    if (stopping) return;
    router = new Router({ linger: CLOSE_LINGER_MS });
    try {
      await router.bind(address);
    } catch (error) {
      throw new Error(`Cannot bind ${address}: ${(error as Error).message}`);
    }
    log(`listening on ${address}`);
    const socket = router;
    // zeromq allows one send in flight per socket: progress and replies go out in order through one chain.
    let sending: Promise<void> = Promise.resolve();
    const send = (frames: Buffer[], what: string): Promise<void> => {
      // A ROUTER drops a message to a sheep that went away; it never blocks.
      const sent = sending.then(() => socket.send(frames));
      sending = sent.catch(() => undefined);
      return sent.catch((error: unknown) => log(`${what}: cannot send: ${(error as Error).message}`));
    };
    while (!stopping) {
      let frames: Buffer[];
      try {
        frames = await router.receive();
      } catch (error) {
        if (stopping) break;
        throw error;
      }
      // A stop between the receive and here closed the socket: the message is not taken.
      if (stopping) break;
      busy = true;
      try {
        await handleFrames(runner, frames, send, log);
      } finally {
        busy = false;
      }
    }
  } finally {
    router?.close();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    options.signal?.removeEventListener('abort', onAbort);
  }
  log('stopped');
}

type Send = (frames: Buffer[], what: string) => Promise<void>;

async function handleFrames(runner: BaseRunner, frames: Buffer[], send: Send, log: (line: string) => void): Promise<void> {
  const [identity, frame] = frames;
  if (frames.length !== 2 || !identity || !frame) {
    log(`ignored a message of ${frames.length} frames (expected identity and one JSON frame)`);
    return;
  }
  let message;
  try {
    message = decodeMessage(frame);
  } catch (error) {
    log(`ignored: ${(error as Error).message}`);
    return;
  }
  if (message.message_type !== 'InputMessage') {
    log(`ignored a ${message.message_type} for job ${message.job_id}: a runner only takes InputMessages`);
    return;
  }
  const jobId = message.job_id;
  const jobDir = join(message.io_data_root, jobId);
  log(`job ${jobId}: started`);
  const sendsProgress = takesProgress(identity);
  jobsInHand.set(runner, (fraction, message) => {
    if (!Number.isFinite(fraction)) {
      log(`job ${jobId}: progress ${fraction} ignored: not a finite number`);
      return;
    }
    if (!sendsProgress) return;
    const progress = encodeMessage({
      message_type: 'ProgressMessage',
      job_id: jobId,
      progress: fraction,
      message: message === null ? null : String(message).slice(0, PROGRESS_MESSAGE_MAX),
    });
    void send([identity, progress], `job ${jobId}: progress`);
  });
  let reply: RunnerMessageInput;
  try {
    await runner.processJob(join(jobDir, INPUT_DIR), join(jobDir, OUTPUT_DIR), jobId);
    reply = { message_type: 'DoneMessage', job_id: jobId };
    log(`job ${jobId}: done`);
  } catch (error) {
    const { type, text, traceback } = describeError(error);
    reply = {
      message_type: 'ErrorMessage',
      job_id: jobId,
      message: `${type}: ${text}`,
      exception_type: type,
      exception_traceback: traceback,
    };
    log(`job ${jobId}: failed: ${traceback || `${type}: ${text}`}`);
  } finally {
    jobsInHand.delete(runner);
  }
  await send([identity, encodeMessage(reply)], `job ${jobId}: the reply`);
}

function describeError(error: unknown): { type: string; text: string; traceback: string } {
  if (typeof error === 'object' && error !== null && 'message' in error) {
    const e = error as Error;
    // `class BadInput extends Error {}` keeps name 'Error'; its class name says more, as in Python.
    const className = e.constructor?.name;
    const type = e.name && e.name !== 'Error' ? e.name : className && className !== 'Object' ? className : 'Error';
    return { type, text: String(e.message), traceback: typeof e.stack === 'string' ? e.stack : '' };
  }
  return { type: 'Error', text: String(error), traceback: '' };
}
