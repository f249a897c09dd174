import type { Model } from '@shepherd/contracts';
import type { RunnerExit } from '../errors';

/** A runner process or container that was started for one model. */
export interface StartedRunner {
  /** Where the runner's ROUTER socket can be reached. */
  host: string;
  port: number;
  /** Resolves once, when the runner has ended for any reason. */
  exited: Promise<RunnerExit>;
  /** Asks the runner to stop (SIGTERM, then SIGKILL after the stop timeout); resolves when it is gone. */
  stop(): Promise<void>;
}

/**
 * How a sheep starts runners: a subprocess (bare) or a container (docker).
 * `start` throws RunnerStartError for what the user must fix (missing model
 * config, missing image); it does not wait for the runner to listen.
 */
export interface RunnerHost {
  start(model: Model): Promise<StartedRunner>;
  /** Removes what a previous worker of this sheep left behind (a crash). */
  cleanup(): Promise<void>;
}
