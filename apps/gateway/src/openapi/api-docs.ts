import { applyDecorators } from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiHeader, ApiParam, ApiQuery, ApiResponse } from '@nestjs/swagger';
import type { z } from 'zod';
import { zodToOpenApi, type OpenApiSchema } from './openapi-schema';
import { JOB_ID_DESCRIPTION, JOB_ID_PATTERN, schemaRef, type ApiSchemaName } from './api-schemas';

// Decorators that document a route completely: its parameters, its body and
// every status it can answer with the shape of each answer.

/** A documented answer: JSON of a named schema, other media, or no body. */
export type Answer = { description: string; json?: ApiSchemaName; content?: Record<string, { schema: object }> };

/** What every route but /health can also answer; a route's own entry for the same status wins. */
const GUARDED: Record<number, string> = {
  401: 'No known API token (only when `auth.tokens` are configured)',
  403: 'The token lacks the scope this route needs',
  429: 'Over the token’s rate limit; `Retry-After` says when to try again',
  503: 'Redis or storage unreachable; `Retry-After: 1`',
};

/** Node refuses oversized headers before the app sees the request: no body. */
const HEADERS_TOO_LARGE = { description: 'Request headers over Node’s limit (16 KiB), answered by Node itself without a body' };

/**
 * Declares each status a route answers. A string is an error answered as
 * `{"message": ...}`. `guarded: false` leaves out the 401/403/429/503 that
 * auth, rate limits and an outage add to every other route.
 */
export function ApiAnswers(answers: Record<number, Answer | string>, { guarded = true } = {}): MethodDecorator {
  const all: Record<number, Answer | string> = { ...(guarded ? GUARDED : {}), ...answers };
  const decorators = Object.entries(all).map(([status, answer]) =>
    ApiResponse({ status: Number(status), description: typeof answer === 'string' ? answer : answer.description, content: contentOf(answer) }),
  );
  decorators.push(ApiResponse({ status: 431, ...HEADERS_TOO_LARGE }));
  return applyDecorators(...decorators);
}

function contentOf(answer: Answer | string): Record<string, { schema: object }> | undefined {
  if (typeof answer === 'string') return { 'application/json': { schema: schemaRef('Error') } };
  return answer.json ? { 'application/json': { schema: schemaRef(answer.json) } } : answer.content;
}

/** A file streamed as stored, its Content-Type guessed from its name. */
export const FILE_ANSWER = { '*/*': { schema: { type: 'string', format: 'binary' } } };

/** Server-Sent Events: `id:`, `event:` and `data:` lines, a blank line after each event. */
export const EVENT_STREAM_ANSWER = {
  'text/event-stream': {
    schema: {
      type: 'string',
      description: 'Events `id: <ms>-<seq>`, `event: status|progress`, `data: <JobStatus JSON with job_id>`; comments `: keep-alive`',
      example: 'id: 1767225600000-0\nevent: status\ndata: {"job_id":"job-1","status":"queued","model":{"name":"echo","version":"v1"}}\n\n',
    },
  },
};

/** Where an event stream resumes: the header EventSource sends on reconnect, or the query for a first connect. */
export function ApiLastEventId(): MethodDecorator {
  const description = 'Resume after this event id (`<ms>-<seq>`, as sent in `id:`); without it the stream starts at the job’s first event';
  const schema = { type: 'string', pattern: '^\\d{1,20}-\\d{1,20}$', example: '1767225600000-0' };
  return applyDecorators(
    ApiHeader({ name: 'Last-Event-ID', required: false, description: `${description}. Wins over \`last_event_id\``, schema }),
    ApiQuery({ name: 'last_event_id', required: false, description, schema }),
  );
}

/** The `:id` of the /jobs routes. */
export function ApiJobId(): MethodDecorator {
  return ApiParam({ name: 'id', required: true, description: JOB_ID_DESCRIPTION, schema: { type: 'string', pattern: JOB_ID_PATTERN }, example: 'job-1' });
}

/**
 * A `*name` wildcard: a relative path that may hold `/`. On a route with an
 * alias without it (`result`, `result/*file`) the document drops it from the
 * alias (see finishDocument).
 */
export function ApiFilePath(name: string, description: string): MethodDecorator {
  return ApiParam({
    name,
    required: true,
    description: `${description}. A relative path: segments separated by \`/\`, none of them \`.\` or \`..\``,
    schema: { type: 'string', minLength: 1 },
  });
}

/** `?timeout=` of wait_ready: a plain decimal number of seconds. */
export function ApiTimeoutQuery(): MethodDecorator {
  return ApiQuery({
    name: 'timeout',
    required: false,
    description: 'Seconds to wait at most, as a plain decimal number (`30`, `2.5`; not `1e3`, `-1`, `0x10`). Without it, waits as long as the job takes.',
    schema: { type: 'string', pattern: '^\\d+(\\.\\d+)?$', example: '30' },
  });
}

/** Each field of a zod query schema as a query parameter, with its type and bounds. */
export function ApiQueryOf(schema: z.ZodType): MethodDecorator {
  const json = zodToOpenApi(schema, 'input');
  const required = new Set((json.required as string[] | undefined) ?? []);
  const properties = Object.entries((json.properties ?? {}) as Record<string, OpenApiSchema>);
  return applyDecorators(
    ...properties.map(([name, { description, ...property }]) =>
      ApiQuery({ name, required: required.has(name), ...(typeof description === 'string' ? { description } : {}), schema: property }),
    ),
  );
}

/** The start-job body: JSON, whatever Content-Type the client sends (the original's clients do not all set it). */
export function ApiStartJobBody(): MethodDecorator {
  return ApiBody({ required: true, description: 'Read as JSON whatever its Content-Type', schema: schemaRef('StartJobRequest') });
}

/** An upload: the file's bytes as the raw body. */
export function ApiRawBody(description: string): MethodDecorator {
  return applyDecorators(ApiConsumes('application/octet-stream'), ApiBody({ required: true, description, schema: { type: 'string', format: 'binary' } }));
}
