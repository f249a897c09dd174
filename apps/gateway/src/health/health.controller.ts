import { Controller, Get, Header, Inject, Logger, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiAnswers } from '../openapi/api-docs';
import type { Response } from 'express';
import type { ShepherdConfig } from '@shepherd/config';
import { SheepRegistry, type RedisClient } from '@shepherd/queue';
import type { JobStorage } from '@shepherd/storage';
import { CONFIG, REDIS, STORAGE } from '../core/tokens';
import { Public, RequireScope } from '../auth/scopes';
import { MetricsService } from './metrics.service';

const CHECK_TIMEOUT_MS = 2000;

@ApiTags('health')
@Controller()
export class HealthController {
  private readonly logger = new Logger('Health');

  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    @Inject(REDIS) private readonly redis: RedisClient,
    @Inject(STORAGE) private readonly storage: JobStorage,
    private readonly sheep: SheepRegistry,
    private readonly metrics: MetricsService,
  ) {}

  @Get('health')
  @Public()
  // security: [] — the one route that asks for no token.
  @ApiOperation({ summary: 'The process lives', security: [] })
  @ApiAnswers({ 200: { description: 'Always, while the process runs', json: 'Health' } }, { guarded: false })
  health(): { status: 'ok' } {
    return { status: 'ok' };
  }

  @Get('ready')
  @RequireScope('read', 'metrics')
  @ApiOperation({ summary: 'Redis and storage answer (503 naming what does not); which sheep are alive' })
  @ApiAnswers({
    200: { description: 'Redis and storage are up', json: 'Ready' },
    403: 'The token has neither the `read` nor the `metrics` scope',
    503: { description: 'Redis or storage is down: `redis`/`storage` say which', json: 'Ready' },
  })
  async ready(@Res() res: Response): Promise<void> {
    const [redis, storage] = await Promise.all([
      check(() => this.redis.ping(), 'redis', this.logger),
      check(() => this.storage.ping(), 'storage', this.logger),
    ]);
    const ids = Object.keys(this.config.sheep);
    const states = redis === 'up' ? await this.sheep.read(ids).catch(() => new Map()) : new Map();
    const sheep = Object.fromEntries(ids.map((id) => [id, Boolean(states.get(id))]));
    const ok = redis === 'up' && storage === 'up';
    res.status(ok ? 200 : 503).json({ ready: ok, redis, storage, sheep });
  }

  @Get('metrics')
  @RequireScope('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4')
  @ApiOperation({ summary: 'Prometheus metrics' })
  @ApiAnswers({
    200: { description: 'The Prometheus text format, version 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } },
    403: 'The token lacks the `metrics` scope',
    503: 'Redis unreachable (queue depths are read at scrape time)',
  })
  async scrape(): Promise<string> {
    return this.metrics.render();
  }
}

/** 'up' or 'down'; why it is down goes to the log (it names internal addresses). */
async function check(call: () => Promise<unknown>, what: string, logger: Logger): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([call(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no answer')), CHECK_TIMEOUT_MS)))]);
    return 'up';
  } catch (error) {
    logger.warn({ err: error }, `${what} is down: ${(error as Error).message}`);
    return 'down';
  } finally {
    clearTimeout(timer);
  }
}
