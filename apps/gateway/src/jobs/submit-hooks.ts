/**
 * Test-only pauses in the submit path, so tests can kill the gateway or take
 * Redis or storage away at each step. `SHEPHERD_TEST_SUBMIT_HOOK=<step>:<action>`:
 * `kill` SIGKILLs this process there; `pause` writes `submit paused at <step>`
 * to stderr and waits for SIGUSR2. Only the first submit that reaches the
 * step triggers it. Unset (always, outside tests): a no-op.
 */
export const SUBMIT_STEPS = ['claimed', 'stored', 'prepared', 'added', 'committed'] as const;
export type SubmitStep = (typeof SUBMIT_STEPS)[number];

const spec = process.env.SHEPHERD_TEST_SUBMIT_HOOK;
const [hookStep, hookAction] = spec ? spec.split(':') : [];
let fired = false;

export async function reachStep(step: SubmitStep): Promise<void> {
  if (!spec || fired || step !== hookStep) return;
  fired = true;
  if (hookAction === 'kill') {
    process.kill(process.pid, 'SIGKILL');
    await new Promise(() => undefined); // the signal lands before anything else runs
  }
  const resumed = new Promise<void>((resolve) => process.once('SIGUSR2', () => resolve()));
  process.stderr.write(`submit paused at ${step}\n`);
  await resumed;
}
