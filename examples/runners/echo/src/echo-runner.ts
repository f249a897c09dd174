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
 * `exit` (the process dies with that code), `fail` (the job throws that
 * message) and `files` ({relative path: text} written into outputs/).
 */
export default class EchoRunner extends BaseRunner {
  async processJob(inputDir: string, outputDir: string): Promise<void> {
    const startedMs = performance.timeOrigin + performance.now();
    const input = JSON.parse(await readFile(join(inputDir, 'input'), 'utf8')) as unknown;
    const asks = typeof input === 'object' && input !== null && !Array.isArray(input) ? (input as Record<string, unknown>) : {};

    if (typeof asks.sleep_ms === 'number') await sleep(asks.sleep_ms);
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
    await writeFile(join(outputDir, 'output'), JSON.stringify({ result: input, model, pid: process.pid, started_ms: startedMs, finished_ms: performance.timeOrigin + performance.now() }));
  }
}
