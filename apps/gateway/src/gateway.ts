import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { Logger } from 'nestjs-pino';
import type pino from 'pino';
import type { ShepherdConfig } from '@shepherd/config';
import { mountBullBoard } from './admin/bull-board';
import { AppModule } from './app.module';

export interface GatewayOptions {
  /** Where log lines go instead of stdout (tests). */
  logDestination?: pino.DestinationStream;
}

/** Builds the gateway app without listening: the CLI and the tests both start it from here. */
export async function createGateway(config: ShepherdConfig, options: GatewayOptions = {}): Promise<NestExpressApplication> {
  // Bodies are parsed by the routes themselves: start-job with its own
  // limit, uploads as raw streams.
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config, options.logDestination), {
    bodyParser: false,
    bufferLogs: true,
  });
  app.useLogger(app.get(Logger));
  app.enableCors(); // open, like the original
  app.enableShutdownHooks();
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Shepherd')
      .setDescription('Runs ML models on this machine’s CPUs and GPUs through a job queue.')
      .setVersion('0.1.0')
      .build(),
  );
  SwaggerModule.setup('docs', app, document);
  mountBullBoard(app, config);
  return app;
}
