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

export const RunnerMessageSchema = z.discriminatedUnion('message_type', [
  InputMessageSchema,
  DoneMessageSchema,
  ErrorMessageSchema,
]);

const EnvelopeSchema = z.object({ message: RunnerMessageSchema });

export type InputMessage = z.infer<typeof InputMessageSchema>;
export type DoneMessage = z.infer<typeof DoneMessageSchema>;
export type ErrorMessage = z.infer<typeof ErrorMessageSchema>;
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
};

/** One frame, byte for byte what the original's `json.dumps` writes for the same message. */
export function encodeMessage(input: RunnerMessageInput): Buffer {
  const parsed = RunnerMessageSchema.safeParse(input);
  if (!parsed.success) throw new Error(`Cannot encode runner message: ${describeIssues(parsed.error)}`);
  const message = parsed.data as Record<string, string>;
  const fields = KEY_ORDER[parsed.data.message_type].map((key) => `${pyString(key)}: ${pyString(message[key] ?? '')}`);
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
