import type { Model } from './model.schema';

// Queue names are stored in Redis keys: renaming one strands the jobs that
// wait under the old name.
//
// A job pinned to a sheep (`sheep_id`) goes to that sheep's own queue; any
// other job goes to the queue of its model, which every sheep may take from,
// preferring the model it already holds. BullMQ forbids ':' in queue names,
// and '@' cannot occur in a model name or version, so the names are unique.

export const SHEEP_QUEUE_PREFIX = 'sheep.';
export const MODEL_QUEUE_PREFIX = 'model.';

/** Redis set (under the configured key prefix) of every model queue ever used. */
export const MODEL_QUEUES_SET = 'model-queues';

export function sheepQueueName(sheepId: string): string {
  return `${SHEEP_QUEUE_PREFIX}${sheepId}`;
}

export function modelQueueName(model: Model): string {
  return `${MODEL_QUEUE_PREFIX}${model.name}@${model.version}`;
}

/**
 * BullMQ refuses a custom job id that reads as an integer ("123"), so such
 * ids get a '#' prefix, a character no job id may contain. Every other job
 * id is BullMQ's job id as it is.
 */
export function queueJobId(jobId: string): string {
  return `${parseInt(jobId, 10)}` === jobId ? `#${jobId}` : jobId;
}

/**
 * BullMQ's priority for ours: BullMQ runs lower numbers first and runs jobs
 * without a priority before all others, so every job gets one (1..201),
 * which also keeps submit order among equals.
 */
export function bullPriority(priority: number | undefined): number {
  return 101 - (priority ?? 0);
}

/** `name:version` of a model queue's name, or null for other queues. */
export function modelOfQueue(queueName: string): string | null {
  if (!queueName.startsWith(MODEL_QUEUE_PREFIX)) return null;
  const rest = queueName.slice(MODEL_QUEUE_PREFIX.length);
  const at = rest.lastIndexOf('@');
  return at > 0 ? `${rest.slice(0, at)}:${rest.slice(at + 1)}` : null;
}
