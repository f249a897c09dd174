import { Module } from '@nestjs/common';
import { SheepController } from './sheep.controller';

@Module({ controllers: [SheepController] })
export class SheepModule {}
