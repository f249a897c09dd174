import { ArgumentsHost, Catch, HttpException, Logger, type ExceptionFilter } from '@nestjs/common';
import type { Response } from 'express';
import { RedisUnavailableError } from '@shepherd/queue';
import {
  FileConflictError,
  FileNotFoundError,
  InvalidPathError,
  JobExistsError,
  JobNotFoundError,
  SizeRequiredError,
  StorageUnavailableError,
} from '@shepherd/storage';
import { ApiError } from './api-errors';

export const STORAGE_DOWN = 'Storage is unavailable; retry later';
export const REDIS_DOWN = 'Redis is unavailable; retry later';

interface Answer {
  status: number;
  message: string;
}

/** Maps our error classes to status codes; anything unknown is a logged 500. */
@Catch()
export class ExceptionsFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  catch(error: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    const answer = this.answer(error);
    if (answer.status === 503) this.logger.warn({ err: error }, (error as Error).message);
    else if (answer.status >= 500) this.logger.error({ err: error }, answer.message);
    if (response.headersSent) {
      response.destroy();
      return;
    }
    // 503s are passing (Redis, storage, a submit in progress): tell clients when to retry.
    if (answer.status === 503) response.setHeader('Retry-After', '1');
    response.status(answer.status).json({ message: answer.message });
  }

  private answer(error: unknown): Answer {
    if (error instanceof ApiError) return { status: error.status, message: error.message };
    // The details (addresses, paths) are for the log, not for whoever asked.
    if (error instanceof StorageUnavailableError) return { status: 503, message: STORAGE_DOWN };
    if (error instanceof RedisUnavailableError) return { status: 503, message: REDIS_DOWN };
    if (error instanceof JobNotFoundError || error instanceof FileNotFoundError) return { status: 404, message: error.message };
    if (error instanceof JobExistsError || error instanceof FileConflictError) return { status: 409, message: error.message };
    if (error instanceof InvalidPathError) return { status: 400, message: error.message };
    if (error instanceof SizeRequiredError) return { status: 411, message: error.message };
    if (error instanceof HttpException) return { status: error.getStatus(), message: error.message };
    return { status: 500, message: 'Internal server error' };
  }
}
