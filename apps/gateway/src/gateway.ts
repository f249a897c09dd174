import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { SwaggerModule } from '@nestjs/swagger';
import { Logger } from 'nestjs-pino';
import type pino from 'pino';
import type { ShepherdConfig } from '@shepherd/config';
import type { Request } from 'express';
import { BOARD_PATH, mountBullBoard } from './admin/bull-board';
import { AppModule } from './app.module';
import { authMiddleware } from './auth/auth.middleware';
import { buildApiDocument } from './openapi/api-document';
import { accessLog, gatewayLogger } from './logging';

export const DOCS_PATH = '/docs';

export interface GatewayOptions {
  /** Where log lines go instead of stdout (tests). */
  logDestination?: pino.DestinationStream;
}

/** Builds the gateway app without listening: the CLI and the tests both start it from here. */
export async function createGateway(config: ShepherdConfig, options: GatewayOptions = {}): Promise<NestExpressApplication> {
  // Bodies are parsed by the routes themselves: start-job with its own
  // limit, uploads as raw streams.
  const logger = gatewayLogger(config, options.logDestination);
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config, logger), {
    bodyParser: false,
    bufferLogs: true,
  });
  app.useLogger(app.get(Logger));
  // No ETag on answers: a job's status changes under the same URL, and hashing every body cost CPU on every answer.
  app.set('etag', false);
  // First, so every request is logged, those auth refuses included.
  app.use(accessLog(logger));
  // The job API allows the configured origins (`*`, like the original, by
  // default); the admin pages never answer cross-origin. Before auth, so
  // preflights (which carry no token) are answered.
  const origins = config.gateway.corsOrigins;
  app.enableCors((req: Request, callback: (error: Error | null, options: object) => void) => {
    const admin = req.path === BOARD_PATH || req.path.startsWith(`${BOARD_PATH}/`);
    callback(null, admin ? { origin: false } : { origin: origins === '*' ? '*' : origins });
  });
  app.use(
    authMiddleware(config, [
      { prefix: BOARD_PATH, scope: 'admin', basic: true },
      { prefix: DOCS_PATH, scope: 'read' },
      { prefix: `${DOCS_PATH}-json`, scope: 'read' },
      { prefix: `${DOCS_PATH}-yaml`, scope: 'read' },
    ]),
  );
  // Only these: SIGUSR2 and the rest are left to the process (tests pause on SIGUSR2).
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
  const document = buildApiDocument(app);
  SwaggerModule.setup(DOCS_PATH.slice(1), app, document);
  mountBullBoard(app, config);
  return app;
}
