import { Controller, Get, Inject, Req } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { ShepherdConfig } from '@shepherd/config';
import type { Model } from '@shepherd/contracts';
import { SheepRegistry } from '@shepherd/queue';
import type { Request } from 'express';
import { RequireScope } from '../auth/scopes';
import { mayAccess, principalOf } from '../auth/principal';
import { CONFIG } from '../core/tokens';

interface SheepView {
  running: boolean;
  model: Model | null;
  request: string | null;
}

@ApiTags('sheep')
@Controller()
export class SheepController {
  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    private readonly registry: SheepRegistry,
  ) {}

  @Get('status')
  @RequireScope('read')
  @ApiOperation({ summary: 'Every configured sheep: running, its model, the job in hand (shown to admin tokens only, with auth)' })
  async status(@Req() req: Request): Promise<{ sheep: Record<string, SheepView> }> {
    const seesJobs = mayAccess(principalOf(req), undefined);
    const ids = Object.keys(this.config.sheep);
    const states = await this.registry.read(ids);
    const sheep: Record<string, SheepView> = {};
    for (const id of ids) {
      const state = states.get(id);
      sheep[id] = state ? { running: true, model: state.model, request: seesJobs ? state.request : null } : { running: false, model: null, request: null };
    }
    return { sheep };
  }
}
