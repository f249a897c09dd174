/** The runner could not be started or never listened: the job fails with this message; the sheep goes on. */
export class RunnerStartError extends Error {
  constructor(
    message: string,
    /** How the runner ended, when it started and then died (a kill, a crash). */
    readonly exit?: RunnerExit,
  ) {
    super(message);
    this.name = 'RunnerStartError';
  }
}

/** The runner process (or container) ended while jobs were in it. */
export class RunnerDiedError extends Error {
  constructor(
    readonly exit: RunnerExit,
    /** True for the job the runner was working on; the others were only queued in its socket. */
    readonly culprit = true,
  ) {
    super(describeExit(exit));
    this.name = 'RunnerDiedError';
  }
}

/**
 * The worker stopped the runner on purpose (`Runner.abort`: a cancel, a job
 * timeout) while this job was in it. Not a RunnerDiedError: the job is not
 * run again; it fails with `reason`.
 */
export class RunnerStoppedError extends Error {
  constructor(
    readonly reason: string,
    /** How the runner ended; absent when it was stopped before it ran. */
    readonly exit?: RunnerExit,
  ) {
    super(reason);
    this.name = 'RunnerStoppedError';
  }
}

export interface RunnerExit {
  code: number | null;
  signal: string | null;
  /** Last lines the runner wrote to stderr. */
  stderrTail: string;
}

export function describeExit(exit: RunnerExit): string {
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  const tail = exit.stderrTail.trim();
  return `The runner ${how}${tail ? `; its stderr ended with:\n${tail}` : ''}`;
}
