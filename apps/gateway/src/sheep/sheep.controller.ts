import { Controller, Get, Inject, Req } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiAnswers } from '../openapi/api-docs';
import type { ShepherdConfig } from '@shepherd/config';
import { modelOfQueue, sheepQueueName, type Model } from '@shepherd/contracts';
import { JobQueues, SheepRegistry } from '@shepherd/queue';
import type { Request } from 'express';
import { RequireScope } from '../auth/scopes';
import { mayAccess, principalOf } from '../auth/principal';
import { CONFIG } from '../core/tokens';

interface SheepView {
  running: boolean;
  model: Model | null;
  request: string | null;
  /** Jobs pinned to this sheep, waiting. */
  waiting: number;
}

@ApiTags('sheep')
@Controller()
export class SheepController {
  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    private readonly registry: SheepRegistry,
    private readonly queues: JobQueues,
  ) {}

  @Get('status')
  @RequireScope('read')
  @ApiOperation({ summary: 'Every configured sheep: running, its model, the job in hand (shown to admin tokens only, with auth)' })
  @ApiAnswers({ 200: { description: 'Every configured sheep', json: 'SheepStatus' }, 503: 'Redis unreachable; `Retry-After: 1`' })
  async status(@Req() req: Request): Promise<{ sheep: Record<string, SheepView>; models: Record<string, { waiting: number }> }> {
    const seesJobs = mayAccess(principalOf(req), undefined);
    const ids = Object.keys(this.config.sheep);
    const [states, pinned, modelQueues] = await Promise.all([
      this.registry.read(ids),
      Promise.all(ids.map((id) => this.queues.waitingCount(sheepQueueName(id)))),
      this.queues.modelQueueNames(),
    ]);
    const sheep: Record<string, SheepView> = {};
    ids.forEach((id, index) => {
      const state = states.get(id);
      const waiting = pinned[index] ?? 0;
      sheep[id] = state ? { running: true, model: state.model, request: seesJobs ? state.request : null, waiting } : { running: false, model: null, request: null, waiting };
    });
    const counts = await Promise.all(modelQueues.map((name) => this.queues.waitingCount(name)));
    const models: Record<string, { waiting: number }> = {};
    modelQueues.forEach((name, index) => {
      const model = modelOfQueue(name);
      if (model) models[model] = { waiting: counts[index] ?? 0 };
    });
    return { sheep, models };
  }
}
