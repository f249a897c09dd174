// The bench's side of loop-probe.cjs: reset the event-loop delay histograms of
// every probed process, then read each one's p99 over the phase since.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tempDir } from '@shepherd/testing';

export interface LoopDelay {
  /** Samples in the phase (one per 10 ms of loop time). */
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export class LoopProbe {
  readonly dir = tempDir('bench-loop');
  private seq = 0;

  /** Environment for a child process to probe: preload plus where to report. */
  env(): NodeJS.ProcessEnv {
    const preload = `--require ${resolve(__dirname, '../src/loop-probe.cjs')}`;
    const options = [process.env.NODE_OPTIONS, preload].filter(Boolean).join(' ');
    return { ...process.env, NODE_OPTIONS: options, BENCH_LOOP_DIR: this.dir };
  }

  /** Clears every probed process's histogram; waits for `pids` to confirm. */
  async reset(pids: number[]): Promise<void> {
    await this.command('reset', pids);
  }

  /** Each pid's delay since the last reset; a process that did not answer in time is left out. */
  async read(pids: number[]): Promise<Map<number, LoopDelay>> {
    return this.command('report', pids);
  }

  private async command(name: string, pids: number[]): Promise<Map<number, LoopDelay>> {
    const seq = ++this.seq;
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(join(this.dir, 'control'), `${name}:${seq}`);
    const found = new Map<number, LoopDelay>();
    const deadline = Date.now() + 5_000; // a process busy with a 10 MB body answers late
    while (found.size < pids.length && Date.now() < deadline) {
      for (const pid of pids) {
        if (found.has(pid)) continue;
        const report = readReport(join(this.dir, `${pid}.json`));
        if (report && report.seq === seq) found.set(pid, { count: report.count, p50: report.p50, p99: report.p99, max: report.max });
      }
      if (found.size < pids.length) await new Promise((r) => setTimeout(r, 50));
    }
    return found;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function readReport(path: string): (LoopDelay & { seq: number }) | undefined {
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    const num = (key: string): number => (typeof value[key] === 'number' ? (value[key] as number) : NaN);
    return { seq: num('seq'), count: num('count'), p50: num('p50'), p99: num('p99'), max: num('max') };
  } catch {
    return undefined; // not written yet
  }
}

/** The worst p99 (and its max) among `pids`' reports: the delay a request could meet in any of them. */
export function worst(reports: Map<number, LoopDelay>, pids: number[]): LoopDelay | undefined {
  const list = pids.map((pid) => reports.get(pid)).filter((r): r is LoopDelay => r !== undefined);
  if (list.length === 0) return undefined;
  return list.reduce((a, b) => (b.p99 > a.p99 ? b : a));
}
