import type { Model } from '@shepherd/contracts';
import type { RunnerExit } from '../errors';

/** A runner process or container that was started for one model. */
export interface StartedRunner {
  /** Where the runner's ROUTER socket can be reached. */
  host: string;
  port: number;
  /** Resolves once, when the runner has ended for any reason. */
  exited: Promise<RunnerExit>;
  /** Asks the runner to stop (SIGTERM, then SIGKILL after the sheep's stop timeout); resolves when it is gone. */
  stop(): Promise<void>;
}

/**
 * A runner made ready to start (image pulled, container created; a bare
 * runner's model config found) while the sheep's current runner still runs.
 */
export interface PreparedRunner {
  /** Starts it; throws RunnerStartError. Call at most once. */
  start(): Promise<StartedRunner>;
  /** Frees what `prepare` made (the created container) when it will not be started. */
  discard(): Promise<void>;
}

/**
 * How a sheep starts runners: a subprocess (bare) or a container (docker).
 * `prepare` and `start` throw RunnerStartError for what the user must fix
 * (missing model config, missing image); neither waits for the runner to
 * listen.
 */
export interface RunnerHost {
  /**
   * Does the slow, failure-prone part of a start (a pull, creating the
   * container) without touching the runner in use, so a model switch stops
   * the old runner only once the new one can start. Hosts without it are
   * started with `start` alone.
   */
  prepare?(model: Model): Promise<PreparedRunner>;
  /** `prepare` and start in one step. */
  start(model: Model): Promise<StartedRunner>;
  /** Removes what a previous worker of this sheep (and deployment) left behind (a crash). */
  cleanup(): Promise<void>;
}
