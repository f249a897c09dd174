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
