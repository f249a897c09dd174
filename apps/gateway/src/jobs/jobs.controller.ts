import { Controller, Get, HttpCode, Inject, Param, Post, Put, Query, Req, Res } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import type { ShepherdConfig } from '@shepherd/config';
import { checkJobId, describeZodError, publicStatus, StartJobRequestSchema, type JobStatus } from '@shepherd/contracts';
import { safeRelativePath, type JobFolder, type JobStorage } from '@shepherd/storage';
import { ApiError, badRequest, unknownJob } from '../errors/api-errors';
import { CONFIG, STORAGE } from '../core/tokens';
import { principalOf } from '../auth/principal';
import { RequireScope } from '../auth/scopes';
import { ByteLimit, declaredSize, readJsonBody } from './http-body';
import { JobsService } from './jobs.service';
import { sendFile, wildcardPath } from './send-file';

@ApiTags('jobs')
@Controller()
export class JobsController {
  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    @Inject(STORAGE) private readonly storage: JobStorage,
    private readonly jobs: JobsService,
  ) {}

  @Post('start-job')
  @RequireScope('submit')
  @HttpCode(200)
  @ApiOperation({ summary: 'Queue a job; `payload` becomes inputs/input, or the inputs were uploaded first' })
  @ApiBody({ schema: z.toJSONSchema(StartJobRequestSchema) as object })
  @ApiResponse({ status: 200, description: '{"success": true}' })
  @ApiResponse({ status: 400, description: 'invalid body or job id' })
  @ApiResponse({ status: 404, description: 'unknown sheep, or no payload and no uploaded inputs' })
  @ApiResponse({ status: 409, description: 'job id already used' })
  @ApiResponse({ status: 413, description: 'body over the payload limit' })
  @ApiResponse({ status: 503, description: 'Redis or storage unreachable' })
  async startJob(@Req() req: Request, @Res({ passthrough: true }) res: Response): Promise<{ success: true }> {
    const body = await readJsonBody(req, res, this.config.gateway.payloadLimit);
    const parsed = StartJobRequestSchema.safeParse(body);
    if (!parsed.success) throw badRequest(`Invalid job request: ${describeZodError(parsed.error)}`);
    await this.jobs.start(parsed.data, principalOf(req));
    return { success: true };
  }

  @Get('jobs/:id/status')
  @RequireScope('read')
  @ApiOperation({ summary: 'The status of a job' })
  async status(@Param('id') jobId: string, @Req() req: Request): Promise<JobStatus> {
    return this.shown(await this.jobs.status(this.knownId(jobId), principalOf(req)));
  }

  @Get('jobs/:id/wait_ready')
  @RequireScope('read')
  @ApiOperation({ summary: 'Waits until the job is done or failed (or `timeout` seconds pass), then answers its status' })
  @ApiQuery({ name: 'timeout', required: false, description: 'seconds; without it, waits as long as the job takes' })
  async waitReady(@Param('id') jobId: string, @Query('timeout') timeout: string | string[] | undefined, @Req() req: Request): Promise<JobStatus> {
    const gone = new AbortController();
    req.on('close', () => gone.abort());
    const status = await this.jobs.waitReady(this.knownId(jobId), waitTimeoutMs(timeout), gone.signal, principalOf(req));
    return this.shown(status);
  }

  @Get(['jobs/:id/result', 'jobs/:id/result/*file'])
  @RequireScope('read')
  @ApiOperation({ summary: 'A file of outputs/ (default `output`): 202 while running, 500 with the error if the job failed' })
  async result(@Param('id') jobId: string, @Param('file') file: string | string[] | undefined, @Req() req: Request, @Res() res: Response): Promise<void> {
    const path = safeRelativePath(wildcardPath(file, 'output'));
    const status = await this.jobs.status(this.knownId(jobId), principalOf(req));
    if (status.status === 'failed') {
      res.status(500).json({ message: status.error_details?.message ?? 'The job failed' });
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
  async input(@Param('id') jobId: string, @Param('file') file: string | string[] | undefined, @Req() req: Request, @Res() res: Response): Promise<void> {
    await this.jobs.checkAccess(this.knownId(jobId), principalOf(req));
    await this.send(res, jobId, 'inputs', wildcardPath(file, 'input'));
  }

  @Put('jobs/:id/inputs/*path')
  @RequireScope('submit')
  @HttpCode(201)
  @ApiOperation({ summary: 'Uploads one input file as the raw request body, before the job is started without payload' })
  @ApiResponse({ status: 201, description: '{"success": true, "file": "inputs/<path>"}' })
  @ApiResponse({ status: 409, description: 'the job was already started' })
  @ApiResponse({ status: 413, description: 'file over the upload limit' })
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
