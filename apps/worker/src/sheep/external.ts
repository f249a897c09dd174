import { Dealer } from 'zeromq';
import type { ExternalSheepConfig } from '@shepherd/config';
import { modelKey, type Model } from '@shepherd/contracts';
import { RunnerStartError, type RunnerExit } from '../errors';
import type { PreparedRunner, RunnerHost, StartedRunner } from './runner-host';

/**
 * ZeroMQ heartbeats on the watch connection: a runner host that vanishes
 * without closing its connections (a node lost, a network cut) counts as
 * gone after this long. libzmq answers them on its own thread, so a runner
 * busy with a long job still answers.
 */
const HEARTBEAT_INTERVAL_MS = 2000;
const HEARTBEAT_TIMEOUT_MS = 10_000;

/**
 * A runner someone else starts and stops (the runner container beside the
 * worker in a Kubernetes pod). `start` only connects: the runner client
 * waits for it to listen (`worker.start_timeout`). `stop` leaves it running.
 * A second connection watches it: when it goes away (killed, restarted)
 * `exited` resolves, so the jobs in it are run again, like on a dead runner,
 * once it listens again. A cancel or a job timeout cannot stop its work:
 * the worker lets go of the job and the runner finishes it unseen.
 */
export class ExternalRunnerHost implements RunnerHost {
  constructor(private readonly options: { sheepId: string; config: ExternalSheepConfig }) {}

  async cleanup(): Promise<void> {
    // Nothing of ours runs: the runner belongs to whoever started it.
  }

  /** Refuses any model but the sheep's own before the runner in use is let go. */
  async prepare(model: Model): Promise<PreparedRunner> {
    const own = this.options.config.model;
    if (modelKey(model) !== modelKey(own)) {
      throw new RunnerStartError(
        `Sheep ${this.options.sheepId} runs only ${modelKey(own)} (an external runner at ${this.options.config.address}); the job asks for ${modelKey(model)}`,
      );
    }
    return { start: async () => this.connect(), discard: async () => undefined };
  }

  async start(model: Model): Promise<StartedRunner> {
    return (await this.prepare(model)).start();
  }

  private connect(): StartedRunner {
    const { address, host, port } = this.options.config;
    const watch = new Dealer({ linger: 0, heartbeatInterval: HEARTBEAT_INTERVAL_MS, heartbeatTimeout: HEARTBEAT_TIMEOUT_MS });
    let end!: (exit: RunnerExit) => void;
    const exited = new Promise<RunnerExit>((resolve) => (end = resolve));
    const finish = (exit: RunnerExit): void => {
      if (!watch.closed) watch.close();
      end(exit);
    };
    void (async () => {
      let seen = false;
      try {
        for await (const event of watch.events) {
          if (event.type === 'handshake') seen = true;
          // Before a first handshake a failed connect is only "not up yet": the runner client waits for it.
          else if (event.type === 'disconnect' && seen) {
            return finish({ code: null, signal: null, stderrTail: `the external runner at ${address} went away (its connection closed); its own logs say why` });
          }
        }
      } catch {
        // The watch socket was closed: stop() has ended it.
      }
    })();
    watch.connect(address);
    return {
      host,
      port,
      exited,
      // Forgets the runner; it goes on running for the next connection.
      stop: async () => finish({ code: null, signal: null, stderrTail: '' }),
    };
  }
}
