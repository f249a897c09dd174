#!/usr/bin/env node
// First: the heap settings apply from start-up on.
import './heap-growth';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, runMain } from '@shepherd/config';
import { Logger } from 'nestjs-pino';
import { createGateway } from './gateway';

const USAGE = 'usage: shepherd -c CONFIG [-h HOST] [-p PORT]';

async function main(): Promise<void> {
  // -h is the host, as in the original; help is --help only.
  const { values } = parseArgs({
    options: {
      config: { type: 'string', short: 'c' },
      host: { type: 'string', short: 'h' },
      port: { type: 'string', short: 'p' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (!values.config) throw new ConfigError(`${USAGE}\nmissing -c CONFIG`);
  const config = loadConfig(values.config);
  const port = values.port === undefined ? config.gateway.port : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`invalid port ${JSON.stringify(values.port)}`);
  const host = values.host ?? config.gateway.host;
  const app = await createGateway(config);
  await app.listen(port, host);
  if (!config.auth && !isLoopback(host)) {
    app.get(Logger).warn(`listening on ${host}:${port} with no API tokens: anyone who reaches this port can submit and read jobs (configure auth.tokens)`);
  }
}

runMain(main);

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}
