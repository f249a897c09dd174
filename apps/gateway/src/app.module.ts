import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { LoggerModule } from 'nestjs-pino';
import type pino from 'pino';
import type { ShepherdConfig } from '@shepherd/config';
import { ScopeGuard } from './auth/scopes';
import { CoreModule } from './core/core.module';
import { ExceptionsFilter } from './errors/exception.filter';
import { HealthModule } from './health/health.module';
import { JobsModule } from './jobs/jobs.module';
import { loggerParams } from './logging';
import { SheepModule } from './sheep/sheep.module';
import { WebhooksModule } from './webhooks/webhooks.module';

@Module({})
export class AppModule {
  static forRoot(config: ShepherdConfig, logger: pino.Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [LoggerModule.forRoot(loggerParams(logger)), CoreModule.forRoot(config), HealthModule, JobsModule, SheepModule, WebhooksModule],
      providers: [
        { provide: APP_FILTER, useClass: ExceptionsFilter },
        { provide: APP_GUARD, useClass: ScopeGuard },
      ],
    };
  }
}
