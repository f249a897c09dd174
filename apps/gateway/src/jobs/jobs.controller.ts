import { Controller, Delete, Get, HttpCode, Inject, Param, Post, Put, Query, Req, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { pipeline } from 'node:stream/promises';
import type { ShepherdConfig } from '@shepherd/config';
import { checkJobId, describeZodError, publicStatus, StartJobRequestSchema, type JobStatus } from '@shepherd/contracts';
import { safeRelativePath, type JobFolder, type JobStorage } from '@shepherd/storage';
import { ApiError, badRequest, unknownJob } from '../errors/api-errors';
import { CONFIG, STORAGE } from '../core/tokens';
import { principalOf } from '../auth/principal';
import { RequireScope } from '../auth/scopes';
import { ByteLimit, declaredSize } from './http-body';
import { readJsonBody } from './json-body';
import { JobControl, type ListPage } from './job-control';
import { ListQuerySchema } from './list-query';
import { JobsService } from './jobs.service';
import { sendFile, wildcardPath } from './send-file';
import { ApiAnswers, ApiFilePath, ApiJobId, ApiQueryOf, ApiRawBody, ApiStartJobBody, ApiTimeoutQuery, FILE_ANSWER } from '../openapi/api-docs';

/** Why a wait ends when its client has gone. */
const CLIENT_GONE = new Error('the client closed the request');

@ApiTags('jobs')
@Controller()
export class JobsController {
  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    @Inject(STORAGE) private readonly storage: JobStorage,
    private readonly jobs: JobsService,
    private readonly control: JobControl,
  ) {}

  @Post('start-job')
  @RequireScope('submit')
  @HttpCode(200)
  @ApiOperation({ summary: 'Queue a job; `payload` becomes inputs/input, or the inputs were uploaded first' })
  @ApiStartJobBody()
  @ApiAnswers({
    200: { description: 'Queued', json: 'Started' },
    400: 'Malformed JSON, a body that is not valid UTF-8 or does not decompress, a field the schema refuses (named), a job id the storage rule refuses, or a webhook URL refused (not http(s), a private or unlisted host, no `webhooks.secret`)',
    404: 'Unknown `sheep_id`, or no `payload` and no inputs uploaded for this job id',
    409: 'The job exists and has run or will run (a retry of a submit whose answer was lost reads it as accepted)',
    413: 'Body over `gateway.payload_limit`',
    415: 'A Content-Encoding or charset the gateway does not read',
    429: 'Over the token’s rate limit, or its `max_waiting_jobs` are waiting already',
    503: 'Redis or storage unreachable, or an upload to this job still streams; `Retry-After: 1`',
  })
  async startJob(@Req() req: Request): Promise<{ success: true }> {
    // The payload streams in as UTF-8 bytes; the schema sees '' in its place (a non-string payload it sees as sent).
    const body = await readJsonBody(req, this.config.gateway.payloadLimit, 'payload');
    const parsed = StartJobRequestSchema.safeParse(body.value);
    if (!parsed.success) throw badRequest(`Invalid job request: ${describeZodError(parsed.error)}`);
    await this.jobs.start({ ...parsed.data, payload: undefined }, principalOf(req), body.streamed);
    return { success: true };
  }

  @Get('jobs/:id/status')
  @RequireScope('read')
  @ApiOperation({ summary: 'The status of a job' })
  @ApiJobId()
  @ApiAnswers({ 200: { description: 'The status record', json: 'JobStatus' }, 404: 'Unknown job (or another token’s)' })
  async status(@Param('id') jobId: string, @Req() req: Request): Promise<JobStatus> {
    return this.shown(await this.jobs.status(this.knownId(jobId), principalOf(req)));
  }

  @Get('jobs/:id/wait_ready')
  @RequireScope('read')
  @ApiOperation({ summary: 'Waits until the job is done or failed (or `timeout` seconds pass), then answers its status' })
  @ApiJobId()
  @ApiTimeoutQuery()
  @ApiAnswers({
    200: { description: 'The status record: final, or as it is when the timeout passes', json: 'JobStatus' },
    400: 'A `timeout` that is not a plain number of seconds',
    404: 'Unknown job (or another token’s)',
  })
  async waitReady(@Param('id') jobId: string, @Query('timeout') timeout: string | string[] | undefined, @Req() req: Request): Promise<JobStatus> {
    const gone = new AbortController();
    // With a reason: abort() without one builds a DOMException, stack and all, at the end of every wait.
    req.on('close', () => gone.abort(CLIENT_GONE));
    const status = await this.jobs.waitReady(this.knownId(jobId), waitTimeoutMs(timeout), gone.signal, principalOf(req));
    return this.shown(status);
  }

  @Get(['jobs/:id/result', 'jobs/:id/result/*file'])
  @RequireScope('read')
  @ApiOperation({ summary: 'A file of outputs/ (default `output`): 202 while running, 500 with the error if the job failed' })
  @ApiJobId()
  @ApiFilePath('file', 'The file in outputs/; without it, `output`')
  @ApiAnswers({
    200: { description: 'The file, its Content-Type guessed from its name', content: FILE_ANSWER },
    202: { description: 'The job is not finished yet', json: 'NotReady' },
    400: 'An invalid file path',
    404: 'Unknown job (or another token’s), or no such file',
    409: 'The job was cancelled: it has no result',
    500: 'The job failed: its error message',
  })
  async result(@Param('id') jobId: string, @Param('file') file: string | string[] | undefined, @Req() req: Request, @Res() res: Response): Promise<void> {
    const path = safeRelativePath(wildcardPath(file, 'output'));
    const status = await this.jobs.status(this.knownId(jobId), principalOf(req));
    if (status.status === 'failed') {
      res.status(500).json({ message: status.error_details?.message ?? 'The job failed' });
      return;
    }
    if (status.status === 'cancelled') {
      res.status(409).json({ message: 'The job was cancelled: it has no result' });
      return;
    }
    if (status.status !== 'done') {
      res.status(202).json({ ready: false });
      return;
    }
    await this.send(res, jobId, 'outputs', path);
  }

  @Get(['jobs/:id/input', 'jobs/:id/input/*file'])
  @RequireScope('read')
  @ApiOperation({ summary: 'A file of inputs/ (default `input`)' })
  @ApiJobId()
  @ApiFilePath('file', 'The file in inputs/; without it, `input`')
  @ApiAnswers({
    200: { description: 'The file, its Content-Type guessed from its name', content: FILE_ANSWER },
    400: 'An invalid file path',
    404: 'Unknown job (or another token’s), or no such file',
  })
  async input(@Param('id') jobId: string, @Param('file') file: string | string[] | undefined, @Req() req: Request, @Res() res: Response): Promise<void> {
    await this.jobs.checkAccess(this.knownId(jobId), principalOf(req));
    await this.send(res, jobId, 'inputs', wildcardPath(file, 'input'));
  }

  @Put('jobs/:id/inputs/*path')
  @RequireScope('submit')
  @HttpCode(201)
  @ApiOperation({ summary: 'Uploads one input file as the raw request body, before the job is started without payload' })
  @ApiJobId()
  @ApiFilePath('path', 'Where the file goes in inputs/')
  @ApiRawBody('The file’s bytes, as they are (any Content-Type); at most `gateway.upload_limit`')
  @ApiAnswers({
    201: { description: 'Stored', json: 'Uploaded' },
    400: 'A job id the storage rule refuses, an invalid path, or a body shorter than its Content-Length',
    409: 'The job was started already: its inputs can no longer change',
    411: 'No Content-Length, and the storage cannot take a file of unknown size (an S3 server without multipart upload)',
    413: 'File over `gateway.upload_limit`',
  })
  async upload(@Param('id') jobId: string, @Param('path') path: string | string[], @Req() req: Request): Promise<{ success: true; file: string }> {
    const limit = this.config.gateway.uploadLimit;
    const size = declaredSize(req, limit);
    const file = safeRelativePath(wildcardPath(path, ''));
    const limited = new ByteLimit(limit, size);
    limited.on('error', () => undefined); // reported through the two promises below
    // Both sides must settle before answering, so a failed upload has
    // cleaned up by the time the client hears of it.
    const upload = this.jobs.upload(jobId, file, limited, size).catch((error: unknown) => {
      limited.destroy(error as Error); // unblocks the request side
      throw error;
    });
    const [received, stored] = await Promise.allSettled([pipeline(req, limited), upload]);
    if (received.status === 'rejected' && received.reason instanceof ApiError) throw received.reason;
    if (stored.status === 'rejected') throw stored.reason;
    if (received.status === 'rejected') throw received.reason;
    return { success: true, file: `inputs/${file}` };
  }

  @Post('jobs/:id/cancel')
  @RequireScope('submit')
  @HttpCode(200)
  @ApiOperation({ summary: 'Cancels a job: a queued one never runs; a running one has its runner stopped and its outputs discarded' })
  @ApiJobId()
  @ApiAnswers({ 200: { description: 'Cancelled', json: 'Started' }, 404: 'Unknown job (or another token’s)', 409: 'The job finished already: nothing to cancel' })
  async cancel(@Param('id') jobId: string, @Req() req: Request): Promise<{ success: true }> {
    await this.control.cancel(this.knownId(jobId), principalOf(req));
    return { success: true };
  }

  @Delete('jobs/:id')
  @RequireScope('submit')
  @HttpCode(204)
  @ApiOperation({ summary: 'Deletes a finished job: its inputs, outputs and records; 409 while it is queued or running' })
  @ApiJobId()
  @ApiAnswers({ 204: { description: 'Deleted' }, 404: 'Unknown job (or another token’s)', 409: 'The job is not finished: cancel it or wait' })
  async delete(@Param('id') jobId: string, @Req() req: Request): Promise<void> {
    await this.control.delete(this.knownId(jobId), principalOf(req));
  }

  @Get('jobs')
  @RequireScope('read')
  @ApiOperation({ summary: 'Jobs, newest first, one page at a time (`next_cursor` gives the next)' })
  @ApiQueryOf(ListQuerySchema)
  @ApiAnswers({ 200: { description: 'One page of jobs', json: 'JobList' }, 400: 'A query parameter the schema refuses (named), or an invalid cursor' })
  async list(@Query() query: Record<string, unknown>, @Req() req: Request): Promise<ListPage> {
    const parsed = ListQuerySchema.safeParse(query);
    if (!parsed.success) throw badRequest(`Invalid query: ${describeZodError(parsed.error)}`);
    const { limit, cursor, status, model, sheep } = parsed.data;
    return this.control.list({ limit, cursor: cursor ?? null, status, model, sheep }, principalOf(req));
  }

  /** Ids that break the storage rule cannot name a job: 404 without touching storage. */
  private knownId(jobId: string): string {
    if (checkJobId(jobId, this.storage.jobIdRule)) throw unknownJob(jobId);
    return jobId;
  }

  private async send(res: Response, jobId: string, folder: JobFolder, path: string): Promise<void> {
    const file = await this.storage.getFile(jobId, folder, safeRelativePath(path));
    await sendFile(res, path, file);
  }

  private shown(status: JobStatus): JobStatus {
    return publicStatus(status, this.config.debug);
  }
}

/** Timers hold at most 2^31-1 ms (about 24.8 days); a longer wait is a wait without a timeout. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** `timeout` in seconds, written as a plain decimal number: "", "0x10", "1e3" and "-1" are refused. */
function waitTimeoutMs(timeout: string | string[] | undefined): number | undefined {
  if (timeout === undefined) return undefined;
  if (typeof timeout !== 'string' || !/^\d+(\.\d+)?$/.test(timeout)) {
    throw badRequest(`Invalid timeout ${JSON.stringify(timeout)}: expected a number of seconds such as 30 or 2.5`);
  }
  const ms = Number(timeout) * 1000;
  return ms > MAX_TIMER_MS ? undefined : ms;
}
