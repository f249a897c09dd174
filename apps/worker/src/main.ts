#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, runMain } from '@shepherd/config';
import { createLogger } from '@shepherd/logging';
import { createRedis } from '@shepherd/queue';
import { createStorage } from '@shepherd/storage';
import { join, resolve } from 'node:path';
import { BareRunnerHost } from './sheep/bare';
import { DockerRunnerHost } from './sheep/docker';
import { ExternalRunnerHost } from './sheep/external';
import type { RunnerHost } from './sheep/runner-host';
import { createSheepWorker } from './create-sheep';

const USAGE = 'usage: shepherd-worker -c CONFIG --sheep SHEEP_ID   (or env SHEPHERD_CONFIG, SHEEP_ID)';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { config: { type: 'string', short: 'c' }, sheep: { type: 'string', short: 's' }, help: { type: 'boolean' } },
  });
  if (values.help) return console.log(USAGE);
  const configPath = values.config ?? process.env.SHEPHERD_CONFIG;
  const sheepId = values.sheep ?? process.env.SHEEP_ID;
  if (!configPath || !sheepId) throw new ConfigError(`${USAGE}\nmissing ${configPath ? 'the sheep id' : 'the config file'}`);
  const config = loadConfig(configPath);
  const sheep = config.sheep[sheepId];
  if (!sheep) throw new ConfigError(`${configPath}: sheep.${sheepId}: no such sheep (configured: ${Object.keys(config.sheep).join(', ') || 'none'})`);

  const log = createLogger({ service: 'worker', level: config.logging.level, directory: config.logging.directory, fileSuffix: sheepId, bindings: { sheepId } });
  let host: RunnerHost;
  const stopTimeoutMs = config.worker.stopTimeoutMs;
  if (sheep.type === 'bare') host = new BareRunnerHost({ sheepId, config: sheep, stopTimeoutMs });
  else if (sheep.type === 'external') host = new ExternalRunnerHost({ sheepId, config: sheep });
  else host = new DockerRunnerHost({ sheepId, deployment: config.redis.prefix, config: sheep, registry: config.registry, dataRoot: join(resolve(config.dataRoot), sheepId), log });

  const redis = createRedis(config.redis, 'worker');
  const subscriber = createRedis(config.redis, 'subscriber');
  const storage = createStorage(config.storage);
  const worker = createSheepWorker({ sheepId, config, storage, redis, subscriber, host, log, heartbeatFile: process.env.SHEPHERD_HEARTBEAT_FILE });

  let signals = 0;
  const shutdown = (signal: string) => {
    signals += 1;
    // A second signal is no reason to lose a job: the first shutdown goes on.
    if (signals > 1) return log.warn({ signal }, 'already stopping: finishing the job in hand');
    log.info({ signal }, 'stopping');
    worker
      .stop()
      .then(async () => {
        await storage.close();
        subscriber.disconnect();
        await redis.quit().catch(() => redis.disconnect());
        process.exit(0);
      })
      .catch((error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  await worker.start();
  log.info({ type: sheep.type, port: sheep.port }, 'sheep ready');
}

runMain(main);
