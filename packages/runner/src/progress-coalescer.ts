export interface ProgressCoalescerOptions {
  /** Least time between the starts of two writes for one job. Default 250 ms. */
  intervalMs?: number;
  /**
   * Records one report. Resolving `false` means "not taken yet" (the job's
   * `processing` status may still be on its way): the same value is tried
   * again when the window ends, a few times at most, unless a newer one came.
   */
  write: (jobId: string, progress: number, message: string | null) => Promise<boolean | void>;
  /** Whether the job is still in the runner; a report held back for one that is not is dropped. Default: always. */
  isLive?: (jobId: string) => boolean;
  /** Told of a write that threw or rejected. Default: ignored. */
  onError?: (jobId: string, error: unknown) => void;
}

interface Report {
  progress: number;
  message: string | null;
}

interface Slot {
  /** The latest report not written yet. */
  held?: Report;
  /** Set while the job's window is open. */
  timer?: NodeJS.Timeout;
  writing: boolean;
  retries: number;
}

const DEFAULT_INTERVAL_MS = 250;
/** Tries of a value not taken: its job's `processing` write is one round trip behind at most. */
const MAX_RETRIES = 4;

/**
 * Turns a runner's progress reports into at most one write per job per
 * interval: the first is written at once, later ones within the window
 * replace each other and the latest is written when it ends (and the write
 * before it has finished). Writes are never awaited by the caller, and
 * report() never throws.
 */
export class ProgressCoalescer {
  private readonly slots = new Map<string, Slot>();
  private readonly intervalMs: number;

  constructor(private readonly options: ProgressCoalescerOptions) {
    this.intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  }

  /** Jobs with a report held back or a window open. */
  get size(): number {
    return this.slots.size;
  }

  report(jobId: string, progress: number, message: string | null): void {
    let slot = this.slots.get(jobId);
    if (!slot) {
      slot = { writing: false, retries: 0 };
      this.slots.set(jobId, slot);
    }
    slot.held = { progress, message };
    slot.retries = 0;
    if (!slot.timer && !slot.writing) this.flush(jobId, slot);
  }

  /** Drops everything held back (shutdown). Writes in flight still end. */
  clear(): void {
    for (const slot of this.slots.values()) clearTimeout(slot.timer);
    this.slots.clear();
  }

  private flush(jobId: string, slot: Slot): void {
    const report = slot.held;
    slot.held = undefined;
    if (this.slots.get(jobId) !== slot) return;
    if (!report || !(this.options.isLive?.(jobId) ?? true)) {
      this.slots.delete(jobId);
      return;
    }
    slot.writing = true;
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (!slot.writing) this.flush(jobId, slot);
    }, this.intervalMs);
    slot.timer.unref();
    new Promise<boolean | void>((resolve) => resolve(this.options.write(jobId, report.progress, report.message)))
      .then(
        (taken) => {
          if (taken === false && !slot.held && slot.retries < MAX_RETRIES) {
            slot.held = report;
            slot.retries += 1;
          }
        },
        (error: unknown) => this.tell(jobId, error),
      )
      .finally(() => {
        slot.writing = false;
        if (!slot.timer) this.flush(jobId, slot);
      });
  }

  private tell(jobId: string, error: unknown): void {
    try {
      this.options.onError?.(jobId, error);
    } catch {
      // a broken logger must not break the job
    }
  }
}
