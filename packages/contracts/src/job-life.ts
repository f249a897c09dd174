import type { Model } from './model.schema';
import type { ErrorDetails, JobState, JobStatus } from './job-status.schema';

// The one definition of a job's life. Every writer of a status record (the
// gateway's submit, the worker, the reconciler) builds it here and asks
// `canTransition` before writing; the status store enforces the same table
// atomically in Redis, so a late or stray writer cannot turn `done` into
// `failed` or `queued`.
//
//   accepted ──► queued ──► processing ──► done
//      │            │  ▲          │ ↺ (taken up again after its worker died)
//      │            │  └──────────┤ (handed back: shutdown, storage away)
//      ▼            ▼             ▼
//    (released)   failed ◄──── failed          cancelled (from queued/processing)
//
// `accepted` is a submit in progress: the id is claimed but the job is not on
// a queue yet. Only the queue add makes a job real; a claim whose submit died
// is taken over by the retry or released by the reconciler.

export const FINAL_STATES: readonly JobState[] = ['done', 'failed', 'cancelled'];

const NEXT: Record<JobState, readonly JobState[]> = {
  // processing: a worker may take a committed job before the gateway records `queued`.
  accepted: ['queued', 'processing', 'failed', 'cancelled'],
  queued: ['processing', 'failed', 'cancelled'],
  // processing again: taken up by another worker after its own died.
  processing: ['queued', 'processing', 'done', 'failed', 'cancelled'],
  done: [],
  failed: [],
  cancelled: [],
};

export function isFinalState(state: JobState): boolean {
  return FINAL_STATES.includes(state);
}

export function isFinished(status: Pick<JobStatus, 'status'>): boolean {
  return isFinalState(status.status);
}

/** `from` null: nothing is known of the job (a new claim, or a record lost from the cache). */
export function canTransition(from: JobState | null, to: JobState): boolean {
  if (from === null) return true;
  return NEXT[from].includes(to);
}

/** The states from which `to` may be written: what the status store checks atomically. */
export function statesBefore(to: JobState): JobState[] {
  return (Object.keys(NEXT) as JobState[]).filter((from) => NEXT[from].includes(to));
}

/** What every record of one job shares; the builders add the rest. */
export interface JobLife {
  model: Model;
  /** When the job was put on its queue (ISO 8601). */
  enqueuedAt?: string | null;
  /** When a runner first got it. */
  startedAt?: string | null;
  /** The API token name that submitted it, if any. */
  owner?: string | null;
  /** The sheep that runs it. */
  sheepId?: string | null;
  /** The job's webhook and the events it is called on. */
  webhook?: { url: string; events: readonly string[] } | null;
}

function now(): string {
  return new Date().toISOString();
}

/** The status records, one builder per state: the only place a record is made. */
export const jobStatus = {
  accepted(model: Model, owner?: string | null, webhook?: JobLife['webhook']): JobStatus {
    return { status: 'accepted', model, ...tags({ model, owner, webhook }) };
  },
  queued(life: JobLife): JobStatus {
    return { status: 'queued', model: life.model, enqueued_at: life.enqueuedAt ?? now(), ...tags(life) };
  },
  processing(life: JobLife): JobStatus {
    return { status: 'processing', model: life.model, enqueued_at: life.enqueuedAt ?? null, processing_started_at: life.startedAt ?? now(), ...tags(life) };
  },
  done(life: JobLife): JobStatus {
    return { status: 'done', model: life.model, ...times(life), ...tags(life) };
  },
  failed(life: JobLife, details: ErrorDetails): JobStatus {
    return { status: 'failed', model: life.model, ...times(life), error_details: details, ...tags(life) };
  },
  cancelled(life: JobLife, message = 'Cancelled'): JobStatus {
    return { status: 'cancelled', model: life.model, ...times(life), error_details: { message, exception_type: 'Cancelled' }, ...tags(life) };
  },
};

function ownedBy(owner: string | null | undefined): Pick<JobStatus, 'submitted_by'> {
  return owner ? { submitted_by: owner } : {};
}

function tags(life: JobLife): Pick<JobStatus, 'submitted_by' | 'sheep_id' | 'webhook' | 'webhook_events'> {
  return {
    ...(life.sheepId ? { sheep_id: life.sheepId } : {}),
    ...ownedBy(life.owner),
    ...(life.webhook ? { webhook: life.webhook.url, webhook_events: [...life.webhook.events] } : {}),
  };
}

function times(life: JobLife): Pick<JobStatus, 'enqueued_at' | 'processing_started_at' | 'finished_at'> {
  return { enqueued_at: life.enqueuedAt ?? null, processing_started_at: life.startedAt ?? null, finished_at: now() };
}

/** Reads a record back into the fields the builders take. */
export function lifeOf(status: JobStatus): JobLife {
  return {
    model: status.model,
    enqueuedAt: status.enqueued_at ?? null,
    startedAt: status.processing_started_at ?? null,
    owner: status.submitted_by ?? null,
    sheepId: status.sheep_id ?? null,
    webhook: status.webhook ? { url: status.webhook, events: status.webhook_events ?? ['completed'] } : null,
  };
}
