import type { JobEvent, TransferProgress } from './types';

const BAR_WIDTH = 24;
/** Redraws at most this often, so a fast transfer does not flood the terminal. */
const REDRAW_MS = 100;

export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function bar(fraction: number): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * BAR_WIDTH);
  return `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%`;
}

interface Output {
  write(text: string): unknown;
}

/**
 * Progress of uploads, downloads and the runner: one bar redrawn in place
 * on a terminal, plain lines (one per file, status change or progress
 * step) otherwise, so logs and pipes stay readable.
 */
export class ProgressView {
  private lastDraw = 0;
  private drawn = false;
  private lastPlain = '';

  constructor(
    private readonly out: Output,
    private readonly tty: boolean,
  ) {}

  transfer = (progress: TransferProgress): void => {
    const amount = progress.total !== null ? `${formatBytes(progress.loaded)}/${formatBytes(progress.total)}` : formatBytes(progress.loaded);
    if (!this.tty) {
      if (progress.done) this.line(`${progress.file}: ${formatBytes(progress.loaded)}`);
      return;
    }
    const fraction = progress.total ? progress.loaded / progress.total : 0;
    this.draw(`${progress.file} ${progress.total ? bar(fraction) : ''} ${amount}`, progress.done);
  };

  job = (event: JobEvent): void => {
    const { status } = event;
    const message = status.progress_message ? ` ${status.progress_message}` : '';
    if (status.status === 'processing' && typeof status.progress === 'number') {
      const text = `${status.job_id} processing ${this.tty ? bar(status.progress) : `${Math.floor(status.progress * 100)}%`}${message}`;
      if (this.tty) this.draw(text, false);
      else this.plainOnce(text);
      return;
    }
    const error = status.error_details?.message ? `: ${status.error_details.message}` : '';
    this.line(`${status.job_id} ${status.status}${status.sheep_id ? ` on ${status.sheep_id}` : ''}${error}`);
  };

  /** A line of its own, after any bar in progress. */
  line(text: string): void {
    this.clear();
    this.out.write(`${text}\n`);
  }

  /** Ends a bar left on screen with a newline. */
  finish(): void {
    if (this.drawn) this.out.write('\n');
    this.drawn = false;
  }

  private draw(text: string, final: boolean): void {
    const now = Date.now();
    if (!final && now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    this.out.write(`\r\x1b[K${text}`);
    this.drawn = true;
    if (final) this.finish();
  }

  private plainOnce(text: string): void {
    if (text === this.lastPlain) return;
    this.lastPlain = text;
    this.line(text);
  }

  private clear(): void {
    if (this.drawn) this.out.write('\r\x1b[K');
    this.drawn = false;
  }
}
