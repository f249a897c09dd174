import { Module } from '@nestjs/common';
import { JobsController } from './jobs.controller';
import { EventsController } from './events.controller';
import { JobEvents } from './job-events';
import { JobsService } from './jobs.service';
import { JobControl } from './job-control';
import { Reconciler } from './reconciler';
import { Submitter } from './submit';
import { Sweeper } from './sweeper';

@Module({ controllers: [JobsController, EventsController], providers: [JobsService, Submitter, Reconciler, JobControl, Sweeper, JobEvents] })
export class JobsModule {}
