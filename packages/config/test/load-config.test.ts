import { describe, expect, it } from '@jest/globals';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfig } from '../src';

const examples = join(__dirname, '../../../examples/configs');

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('example configs', () => {
  it('loads the bare sheep config with the schema defaults', () => {
    const config = loadConfig(join(examples, 'shepherd-bare.yml'), { env: {} });
    expect(config.storage).toEqual({ backend: 'filesystem', root: '/tmp/shepherd-storage' });
    expect(config.sheep.bare_sheep).toMatchObject({ type: 'bare', port: 9001, workingDirectory: 'examples/models', devices: [] });
    expect(config.redis).toEqual({ url: 'redis://127.0.0.1:6379', prefix: 'shepherd', name: 'mymaster', minReplicasAck: 0 });
    expect(config.gateway).toMatchObject({ host: '0.0.0.0', port: 5000, payloadLimit: 64 * 1024 ** 2, admin: undefined });
    expect(config.debug).toBe(false);
  });

  it('loads two docker CPU sheep on S3 with the original bucket layout', () => {
    const config = loadConfig(join(examples, 'shepherd-docker-cpu.yml'), { env: {} });
    expect(config.storage).toMatchObject({ backend: 's3', url: 'http://127.0.0.1:9000', layout: 'bucket-per-job' });
    expect(Object.keys(config.sheep)).toEqual(['cpu_sheep_1', 'cpu_sheep_2']);
    expect(config.sheep.cpu_sheep_2).toMatchObject({ type: 'docker', memory: 4 * 1024 ** 3, cpus: 2, pull: 'missing', autoremoveContainers: true });
    expect(config.logging).toEqual({ level: 'info', directory: '/tmp/shepherd-logs' });
  });

  it('loads a GPU sheep with its devices and the single-bucket layout', () => {
    const config = loadConfig(join(examples, 'shepherd-gpu.yml'), { env: {} });
    expect(config.sheep.gpu_sheep_0?.devices).toEqual(['/dev/nvidia0']);
    expect(config.storage).toMatchObject({ layout: 'single-bucket', bucket: 'shepherd-jobs' });
  });

  it('substitutes $NAME and ${NAME} and coerces numbers', () => {
    const env = {
      SHEPHERD_DATA_ROOT: '/srv/data',
      REGISTRY_URL: 'http://reg:5000',
      REGISTRY_USERNAME: 'u',
      REGISTRY_PASSWORD: 'p$ss',
      S3_URL: 'https://s3.example.com',
      S3_ACCESS_KEY: 'ak',
      S3_SECRET_KEY: 'sk',
      REDIS_URL: 'redis://redis:6379',
      SHEPHERD_PORT: '8080',
      SHEEP_PORT: '9100',
    };
    const config = loadConfig(join(examples, 'shepherd-env.yml'), { env });
    expect(config.dataRoot).toBe('/srv/data');
    expect(config.registry).toEqual({ url: 'http://reg:5000', username: 'u', password: 'p$ss' });
    expect(config.storage).toMatchObject({ url: 'https://s3.example.com', accessKey: 'ak', secretKey: 'sk' });
    expect(config.gateway.port).toBe(8080);
    expect(config.sheep.gpu_sheep_0?.port).toBe(9100);
  });

  it('keeps $$ as a literal $', () => {
    const config = parseConfig('data_root: /a/$$HOME/${X}$$\n', 'c.yml', { env: { X: 'x', HOME: '/root' } });
    expect(config.dataRoot).toBe('/a/$HOME/x$');
  });

  it('names the unset variable and the key that uses it', () => {
    const message = errorOf(() => loadConfig(join(examples, 'shepherd-env.yml'), { env: { SHEPHERD_DATA_ROOT: '/x' } }));
    expect(message).toMatch(/shepherd-env\.yml: registry\.url: environment variable REGISTRY_URL is not set/);
  });

  it('explains every problem of the invalid example: file, key path, expected, found', () => {
    const message = errorOf(() => loadConfig(join(examples, 'invalid.yml'), { env: {} }));
    expect(message).toContain(`Invalid config ${join(examples, 'invalid.yml')}`);
    expect(message).toContain('storage.secret_key: expected a value for the s3 backend, found nothing');
    expect(message).toContain('sheep.bad_sheep.port: expected number, found "not-a-port"');
    expect(message).toMatch(/sheep\.other\.type: .*"bare".*"docker".*, found "lambda"/);
  });
});

describe('validation', () => {
  it('rejects unknown keys, naming them', () => {
    expect(errorOf(() => parseConfig('sheep: {}\nstorrage: {}\n', 'c.yml'))).toContain('unknown key "storrage"');
    expect(errorOf(() => parseConfig('sheep:\n  s:\n    type: bare\n    port: 1\n    working_directory: .\n    gpu: 1\n', 'c.yml'))).toContain(
      'sheep.s: unknown key "gpu"',
    );
  });

  it('rejects two sheep on one port', () => {
    const text = 'sheep:\n  a: {type: docker, port: 9001}\n  b: {type: docker, port: 9001}\n';
    expect(errorOf(() => parseConfig(text, 'c.yml'))).toContain('sheep.b.port: expected a port no other sheep uses (a has 9001)');
  });

  it('rejects bad YAML, a non-mapping root, unsafe sheep ids and bad sizes', () => {
    expect(errorOf(() => parseConfig('sheep: [\n', 'c.yml'))).toMatch(/^c\.yml: not valid YAML/);
    expect(errorOf(() => parseConfig('- 1\n', 'c.yml'))).toContain('(root): expected a mapping of keys, found a list');
    expect(errorOf(() => parseConfig('sheep:\n  ../x: {type: docker, port: 1}\n', 'c.yml'))).toContain('sheep.../x');
    expect(errorOf(() => parseConfig('gateway: {payload_limit: lots}\n', 'c.yml'))).toContain(
      'gateway.payload_limit: expected a size such as',
    );
  });

  it('reads sizes with units and DEBUG from the environment', () => {
    const config = parseConfig('gateway: {payload_limit: 10mb, upload_limit: 1.5gb}\n', 'c.yml', { env: { DEBUG: '1' } });
    expect(config.gateway.payloadLimit).toBe(10 * 1024 ** 2);
    expect(config.gateway.uploadLimit).toBe(1.5 * 1024 ** 3);
    expect(config.debug).toBe(true);
  });

  it('names a missing file', () => {
    expect(errorOf(() => loadConfig('/nonexistent/shepherd.yml'))).toBe('/nonexistent/shepherd.yml: cannot read the config file (ENOENT)');
  });
});

describe('worker settings', () => {
  it('has defaults and reads durations in seconds or with units', () => {
    expect(parseConfig('sheep: {}\n', 'c.yml').worker).toEqual({
      maxAttempts: 3,
      prefetch: 1,
      heartbeatMs: 2000,
      startTimeoutMs: 120_000,
      stopTimeoutMs: 10_000,
      shutdownGraceMs: 60_000,
      lockDurationMs: 30_000,
      pollIntervalMs: 1000,
      maxHandBacks: 10,
      handBackDelayMs: 1000,
      jobTimeoutMs: undefined,
      maxJobTimeoutMs: undefined,
      queueTimeoutMs: undefined,
    });
    const config = parseConfig('worker: {heartbeat: 500ms, stop_timeout: 2, shutdown_grace: 1m}\n', 'c.yml');
    expect(config.worker).toMatchObject({ heartbeatMs: 500, stopTimeoutMs: 2000, shutdownGraceMs: 60_000 });
    expect(() => parseConfig('worker: {heartbeat: soon}\n', 'c.yml')).toThrow('worker.heartbeat: expected a duration such as');
  });

  it('reads per-model time limits, retention and API tokens', () => {
    const config = parseConfig(
      [
        'models: {ocr: {timeout: 60}, "ocr:v2": {timeout: 2m, queue_timeout: 30}}',
        'retention: {done: 1h, failed: 7d}',
        'auth: {tokens: [{name: ci, token: "0123456789abcdef0", scopes: [submit, read]}], rate_limit: 5}',
      ].join('\n'),
      'c.yml',
    );
    expect(config.models).toEqual({ ocr: { timeoutMs: 60_000, queueTimeoutMs: undefined }, 'ocr:v2': { timeoutMs: 120_000, queueTimeoutMs: 30_000 } });
    expect(config.auth?.tokens[0]).toMatchObject({ name: 'ci', scopes: ['submit', 'read'], rateLimit: 5 });
    expect(config.auth?.tokens[0]?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(() => parseConfig('auth: {tokens: [{name: x, token: short, scopes: [read]}]}\n', 'c.yml')).toThrow(/at least 16 characters/);
    expect(() => parseConfig('auth: {tokens: [{name: x, scopes: [read]}]}\n', 'c.yml')).toThrow(/exactly one of token_sha256 and token/);
  });
});

describe('redis settings', () => {
  it('reads sentinels and asks replicas to acknowledge submits by default with them', () => {
    const config = parseConfig('redis: {sentinels: ["127.0.0.1:26379", "10.0.0.2:26379"], name: main, password: "${PW}"}\n', 'c.yml', { env: { PW: 'secret' } });
    expect(config.redis).toMatchObject({ sentinels: ['127.0.0.1:26379', '10.0.0.2:26379'], name: 'main', password: 'secret', minReplicasAck: 1 });
    expect(() => parseConfig('redis: {sentinels: ["nohost"]}\n', 'c.yml')).toThrow(/redis.sentinels.0: expected host:port/);
  });

  it('reads cluster seed nodes; WAIT is off with a cluster and cannot be asked for', () => {
    const config = parseConfig('redis: {cluster: ["127.0.0.1:7000", "127.0.0.1:7001"]}\n', 'c.yml');
    expect(config.redis).toMatchObject({ cluster: ['127.0.0.1:7000', '127.0.0.1:7001'], minReplicasAck: 0 });
    expect(() => parseConfig('redis: {cluster: ["127.0.0.1:7000"], min_replicas_ack: 1}\n', 'c.yml')).toThrow(/redis.min_replicas_ack: expected 0 with a cluster/);
    expect(() => parseConfig('redis: {cluster: ["127.0.0.1:7000"], sentinels: ["127.0.0.1:26379"]}\n', 'c.yml')).toThrow(/redis.cluster: expected either/);
  });
});
