import { Module } from '@nestjs/common';
import { JobsController } from './jobs.controller';
import { JobsService } from './jobs.service';
import { Reconciler } from './reconciler';
import { Submitter } from './submit';

@Module({ controllers: [JobsController], providers: [JobsService, Submitter, Reconciler] })
export class JobsModule {}
