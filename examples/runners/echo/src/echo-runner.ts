import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BaseRunner } from '@shepherd/runner';

/**
 * Echoes `inputs/input` (JSON) as `outputs/output`:
 * `{"result": <input>, "model": <config.model or null>, "pid": <runner pid>,
 * "started_ms", "finished_ms"}` (epoch milliseconds: the benchmark measures how
 * busy the runner was from them).
 * For tests, an input object may also ask for `sleep_ms` (wait first),
 * `progress_steps` (with `sleep_ms`: wait in that many equal steps, reporting
 * `this.progress(i / N, "step i/N")` after each; the output then holds
 * `progress_sent_ms`, when each report was sent), `exit` (the process dies
 * with that code), `fail` (the job throws that message) and `files`
 * ({relative path: text} written into outputs/).
 */
export default class EchoRunner extends BaseRunner {
  async processJob(inputDir: string, outputDir: string): Promise<void> {
    const startedMs = performance.timeOrigin + performance.now();
    const input = JSON.parse(await readFile(join(inputDir, 'input'), 'utf8')) as unknown;
    const asks = typeof input === 'object' && input !== null && !Array.isArray(input) ? (input as Record<string, unknown>) : {};

    const steps = typeof asks.progress_steps === 'number' && asks.progress_steps >= 1 ? Math.floor(asks.progress_steps) : 0;
    const sleepMs = typeof asks.sleep_ms === 'number' ? asks.sleep_ms : 0;
    const progressSentMs: number[] = [];
    if (steps > 0) {
      for (let step = 1; step <= steps; step++) {
        await sleep(sleepMs / steps);
        progressSentMs.push(performance.timeOrigin + performance.now());
        this.progress(step / steps, `step ${step}/${steps}`);
      }
    } else if (sleepMs) {
      await sleep(sleepMs);
    }
    if (typeof asks.exit === 'number') process.exit(asks.exit);
    if (asks.fail !== undefined) throw new Error(String(asks.fail));

    await mkdir(outputDir, { recursive: true });
    if (typeof asks.files === 'object' && asks.files !== null) {
      for (const [name, content] of Object.entries(asks.files)) {
        const file = resolve(outputDir, name);
        if (relative(outputDir, file).startsWith('..')) throw new Error(`files: ${name} is outside outputs/`);
        await mkdir(dirname(file), { recursive: true });
        await writeFile(file, String(content));
      }
    }
    const model = (this.config as { model?: unknown } | null)?.model ?? null;
    const finishedMs = performance.timeOrigin + performance.now();
    const output = { result: input, model, pid: process.pid, started_ms: startedMs, finished_ms: finishedMs };
    await writeFile(join(outputDir, 'output'), JSON.stringify(steps > 0 ? { ...output, progress_sent_ms: progressSentMs } : output));
  }
}
