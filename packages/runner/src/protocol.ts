import { z } from 'zod';

/*
 * The original Shepherd's runner messages (shepherd/comm/messages.py): one
 * ZeroMQ frame of JSON, `{"message": {...}}`, snake_case as on the wire.
 * The original validates with schematics in strict mode, so we never send a
 * key it does not know; we accept null where it may send one.
 */

/** A string the original may leave null; it reads as ''. */
const text = z
  .string()
  .nullish()
  .transform((value) => value ?? '');

const base = {
  /** ROUTER identity; always '' on the wire (the identity travels as its own frame). */
  identity: text,
  job_id: z.string(),
};

export const InputMessageSchema = z.object({
  message_type: z.literal('InputMessage'),
  ...base,
  /** Directory holding `<job_id>/inputs` and `<job_id>/outputs`. */
  io_data_root: z.string(),
});

export const DoneMessageSchema = z.object({
  message_type: z.literal('DoneMessage'),
  ...base,
});

export const ErrorMessageSchema = z.object({
  message_type: z.literal('ErrorMessage'),
  ...base,
  /** Short, e.g. `ValueError: bad input`. */
  message: text,
  exception_type: text,
  exception_traceback: text,
});

/** Longest `message` a ProgressMessage may carry; the SDKs cut longer ones. */
export const PROGRESS_MESSAGE_MAX = 1000;

/**
 * Ours, not the original's (runner to sheep, optional): how far the runner is
 * with a job, sent while it works. Same envelope as DoneMessage, plus
 * `progress` (a JSON number, clamped to 0..1 on receipt) and `message`
 * (left out when there is none).
 *
 * The original sheep must never receive one: its listener
 * (shepherd/shepherd/shepherd.py `_listen`) decodes every frame with
 * schematics' PolyModelType, whose claim function finds no class for an
 * unknown `message_type` and raises; Messenger.recv catches only ZMQ errors,
 * so the exception ends the listener task and that shepherd reads no reply
 * from any sheep again (every job stays `processing`). It does not ignore it.
 * Hence runners send progress only to a sheep that announced it takes it:
 * see PROGRESS_PEER_PREFIX.
 */
export const ProgressMessageSchema = z.object({
  message_type: z.literal('ProgressMessage'),
  ...base,
  progress: z
    .number()
    .refine(Number.isFinite, 'expected a finite number')
    .transform((value) => Math.min(1, Math.max(0, value))),
  message: z
    .string()
    .max(PROGRESS_MESSAGE_MAX)
    .nullish()
    .transform((value) => value || null),
});

/**
 * The start of the ZeroMQ routing id of a sheep that takes ProgressMessages
 * (a random suffix keeps it unique). A ROUTER sees it as the identity frame
 * of every request, and the original runner echoes identities untouched, so
 * announcing costs no message; the original sheep's DEALER has a random
 * binary id, so a runner never sends it progress.
 */
export const PROGRESS_PEER_PREFIX = 'shepherd-progress/1/';

/** Whether the peer behind this ROUTER identity frame takes ProgressMessages. */
export function takesProgress(identity: Buffer | Uint8Array): boolean {
  return Buffer.from(identity.buffer, identity.byteOffset, identity.byteLength)
    .subarray(0, PROGRESS_PEER_PREFIX.length)
    .equals(Buffer.from(PROGRESS_PEER_PREFIX));
}

export const RunnerMessageSchema = z.discriminatedUnion('message_type', [
  InputMessageSchema,
  DoneMessageSchema,
  ErrorMessageSchema,
  ProgressMessageSchema,
]);

const EnvelopeSchema = z.object({ message: RunnerMessageSchema });

export type InputMessage = z.infer<typeof InputMessageSchema>;
export type DoneMessage = z.infer<typeof DoneMessageSchema>;
export type ErrorMessage = z.infer<typeof ErrorMessageSchema>;
export type ProgressMessage = z.infer<typeof ProgressMessageSchema>;
export type RunnerMessage = z.infer<typeof RunnerMessageSchema>;
/** What `encodeMessage` takes: `identity` may be left out. */
export type RunnerMessageInput = z.input<typeof RunnerMessageSchema>;

/** A frame that is not a runner message. */
export class MessageDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MessageDecodeError';
  }
}

/*
 * Key order of the original's output: schematics sorts fields by creation, so
 * the base class's identity, job_id and the message_type serializable come
 * before a subclass's own fields.
 */
const KEY_ORDER: Record<RunnerMessage['message_type'], readonly string[]> = {
  InputMessage: ['identity', 'job_id', 'message_type', 'io_data_root'],
  DoneMessage: ['identity', 'job_id', 'message_type'],
  ErrorMessage: ['identity', 'job_id', 'message_type', 'message', 'exception_type', 'exception_traceback'],
  ProgressMessage: ['identity', 'job_id', 'message_type', 'progress', 'message'],
};

/** One frame, byte for byte what the original's `json.dumps` writes for the same message. */
export function encodeMessage(input: RunnerMessageInput): Buffer {
  const parsed = RunnerMessageSchema.safeParse(input);
  if (!parsed.success) throw new Error(`Cannot encode runner message: ${describeIssues(parsed.error)}`);
  const message = parsed.data as Record<string, string | number | null>;
  const fields: string[] = [];
  for (const key of KEY_ORDER[parsed.data.message_type]) {
    const value = message[key];
    // Only ProgressMessage has optional or numeric fields: a missing `message` is left out.
    if (value === null && parsed.data.message_type === 'ProgressMessage') continue;
    fields.push(`${pyString(key)}: ${typeof value === 'number' ? pyFloat(value) : pyString(value ?? '')}`);
  }
  return Buffer.from(`{"message": {${fields.join(', ')}}}`, 'utf8');
}

/** Parses one frame; throws MessageDecodeError naming what is wrong. */
export function decodeMessage(frame: Buffer | Uint8Array | string): RunnerMessage {
  let source: string;
  try {
    source = typeof frame === 'string' ? frame : new TextDecoder('utf-8', { fatal: true }).decode(frame);
  } catch {
    throw new MessageDecodeError('Malformed runner message: not valid UTF-8');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(source);
  } catch (error) {
    throw new MessageDecodeError(`Malformed runner message: not JSON (${(error as Error).message}): ${preview(source)}`);
  }
  const parsed = EnvelopeSchema.safeParse(raw);
  if (!parsed.success) {
    throw new MessageDecodeError(`Malformed runner message: ${describeIssues(parsed.error)}: ${preview(source)}`);
  }
  return parsed.data.message;
}

/** A JSON string as Python's json.dumps writes it (ensure_ascii: everything past `~` escaped). */
function pyString(value: string): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A float as Python's json.dumps writes it (`1.0`, `0.25`); exponents of tiny values differ (`1e-7`, Python `1e-07`), both valid JSON. */
function pyFloat(value: number): string {
  return Number.isInteger(value) ? value.toFixed(1) : String(value);
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.map(String).join('.');
      return path ? `${path}: ${issue.message}` : issue.message;
    })
    .join('; ');
}

function preview(source: string): string {
  return source.length > 200 ? `${source.slice(0, 200)}...` : source;
}
