import { Module } from '@nestjs/common';
import { JobsController } from './jobs.controller';
import { JobsService } from './jobs.service';
import { JobControl } from './job-control';
import { Reconciler } from './reconciler';
import { Submitter } from './submit';
import { Sweeper } from './sweeper';

@Module({ controllers: [JobsController], providers: [JobsService, Submitter, Reconciler, JobControl, Sweeper] })
export class JobsModule {}
