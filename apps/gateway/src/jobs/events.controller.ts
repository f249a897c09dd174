import { Controller, Get, Inject, Param, Query, Req, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { checkJobId } from '@shepherd/contracts';
import type { JobStorage } from '@shepherd/storage';
import { badRequest, unknownJob } from '../errors/api-errors';
import { STORAGE } from '../core/tokens';
import { principalOf } from '../auth/principal';
import { RequireScope } from '../auth/scopes';
import { ApiAnswers, ApiJobId, ApiLastEventId, EVENT_STREAM_ANSWER } from '../openapi/api-docs';
import { isStreamId, JobEvents } from './job-events';

const CLIENT_GONE = new Error('the client closed the stream');

/** `GET /jobs/:id/events`: a job's status changes and progress as Server-Sent Events, from its Redis stream. */
@ApiTags('jobs')
@Controller()
export class EventsController {
  constructor(
    @Inject(STORAGE) private readonly storage: JobStorage,
    private readonly feeds: JobEvents,
  ) {}

  @Get('jobs/:id/events')
  @RequireScope('read')
  @ApiOperation({
    summary: 'The job’s status changes and progress as Server-Sent Events: its history, then live, until its final status',
    description:
      'Each event: `id: <stream id>`, `event: status|progress`, `data: <the status record with job_id>`. The stream ends after ' +
      'the final status (done, failed, cancelled). A job without a recorded history gets one `status` event with id `0-0`. ' +
      'A comment `: keep-alive` comes every 15 s. Resume after an event with the `Last-Event-ID` header or `last_event_id`.',
  })
  @ApiJobId()
  @ApiLastEventId()
  @ApiAnswers({
    200: { description: 'The event stream (`text/event-stream`, never compressed)', content: EVENT_STREAM_ANSWER },
    400: 'A `Last-Event-ID` or `last_event_id` that is not a stream id `<ms>-<seq>`',
    404: 'Unknown job (or another token’s)',
  })
  async events(
    @Param('id') jobId: string,
    @Query('last_event_id') query: string | string[] | undefined,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    if (checkJobId(jobId, this.storage.jobIdRule)) throw unknownJob(jobId);
    const afterId = resumeId(req.headers['last-event-id'], query);
    const gone = new AbortController();
    res.on('close', () => gone.abort(CLIENT_GONE)); // a reason: no DOMException built per stream
    const feed = await this.feeds.follow(jobId, afterId, principalOf(req), gone.signal);
    // setHeader, not res.set: Express would add a charset to the media type.
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    feed.start(res);
  }
}

/** The header (what EventSource sends on reconnect) wins over the query (a first connect). */
function resumeId(header: string | string[] | undefined, query: string | string[] | undefined): string | null {
  const [value, name] = header !== undefined ? [header, 'Last-Event-ID'] : [query, 'last_event_id'];
  if (value === undefined || value === '') return null;
  if (typeof value !== 'string' || !isStreamId(value)) {
    throw badRequest(`Invalid ${name} ${JSON.stringify(value)}: expected the id of an event of this stream, such as 1767225600000-0`);
  }
  return value;
}
