import { z } from 'zod';
import { boolField, durationField, intField, nonEmpty, sizeField } from './fields';
import { SHEEP_ID_PATTERN, SheepSchema } from './sheep.schema';
import { AuthSchema, CorsOriginsSchema } from './auth.schema';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

const StorageSchema = z
  .strictObject({
    /** `filesystem` (default when no url is given) or `s3` (MinIO, AWS S3, ...). */
    backend: z.enum(['filesystem', 's3']).optional(),
    /** S3 endpoint; `https://` means TLS. */
    url: z.url().optional(),
    access_key: z.string().optional(),
    secret_key: z.string().optional(),
    region: nonEmpty().default('us-east-1'),
    /** `bucket-per-job` (the original's) or `single-bucket` (`<bucket>/<job_id>/...`). */
    layout: z.enum(['bucket-per-job', 'single-bucket']).default('bucket-per-job'),
    bucket: nonEmpty().default('shepherd'),
    /** Root directory of the filesystem backend. */
    root: nonEmpty().default('./shepherd-storage'),
  })
  .superRefine((s, ctx) => {
    const backend = s.backend ?? (s.url ? 's3' : 'filesystem');
    if (backend !== 's3') return;
    for (const key of ['url', 'access_key', 'secret_key'] as const) {
      if (!s[key]) ctx.addIssue({ code: 'custom', path: [key], message: 'expected a value for the s3 backend' });
    }
  })
  .transform((s) =>
    (s.backend ?? (s.url ? 's3' : 'filesystem')) === 's3'
      ? {
          backend: 's3' as const,
          url: s.url ?? '',
          accessKey: s.access_key ?? '',
          secretKey: s.secret_key ?? '',
          region: s.region,
          layout: s.layout,
          bucket: s.bucket,
        }
      : { backend: 'filesystem' as const, root: s.root },
  );

const WEBHOOK_SECRET_EXPECTED = 'expected `whsec_` and base64 of 24 bytes or more, or a string of at least 24 characters';

/** `whsec_<base64>` of 24+ bytes, or any other string of 24+ characters. */
function validWebhookSecret(secret: string): boolean {
  if (!secret.startsWith('whsec_')) return secret.length >= 24;
  const base64 = secret.slice('whsec_'.length);
  return /^[A-Za-z0-9+/]+={0,2}$/.test(base64) && Buffer.from(base64, 'base64').length >= 24;
}

export const ConfigSchema = z
  .strictObject({
    /** Local working directories of the sheep. */
    data_root: nonEmpty().default('/tmp/shepherd-data'),
    registry: z
      .strictObject({ url: nonEmpty(), username: z.string().optional(), password: z.string().optional() })
      .optional(),
    storage: StorageSchema.prefault({}),
    logging: z
      .strictObject({
        level: z.enum(LEVELS).default('info'),
        /** Where the gateway and workers also write their JSON logs; none when unset. */
        logging_directory: nonEmpty().optional(),
      })
      .prefault({}),
    sheep: z.record(z.string().regex(SHEEP_ID_PATTERN, 'sheep ids: letters, digits, ".", "_", "-"'), SheepSchema).default({}),
    redis: z
      .strictObject({
        url: nonEmpty().default('redis://127.0.0.1:6379'),
        /** Prefix of every Redis key Shepherd writes; separate deployments sharing a Redis use different ones. */
        prefix: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('shepherd'),
        /** Redis Sentinel: `host:port` of each sentinel; the master is found (and followed on failover) through them. */
        sentinels: z.array(z.string().regex(/^[^:\s]+:\d{1,5}$/, 'expected host:port')).min(1).optional(),
        /**
         * Redis Cluster: `host:port` of some of its nodes (seeds); the others
         * and the slots are learnt from them. Queue names then get hash tags.
         */
        cluster: z.array(z.string().regex(/^[^:\s]+:\d{1,5}$/, 'expected host:port')).min(1).optional(),
        /** The master's name in Sentinel. */
        name: nonEmpty().default('mymaster'),
        /** Password of the Redis servers (with sentinels or a cluster; a plain `url` carries its own). */
        password: z.string().optional(),
        /** Password of the sentinels themselves, when they have one. */
        sentinel_password: z.string().optional(),
        /**
         * Replicas that must have a submit before it is answered 200 (Redis
         * WAIT): a failover then cannot drop an accepted job. Default 1 with
         * sentinels, else 0; must be 0 with a cluster (WAIT is per node).
         */
        min_replicas_ack: intField(0, 16).optional(),
      })
      .prefault({}),
    gateway: z
      .strictObject({
        host: nonEmpty().default('0.0.0.0'),
        port: intField(0, 65535).default(5000),
        /** Largest JSON body of /start-job (the inline payload is in it). */
        payload_limit: sizeField().default(64 * 1024 ** 2),
        /** Largest single input file uploaded over HTTP. */
        upload_limit: sizeField().default(4 * 1024 ** 3),
        /** Basic auth for Bull Board at /admin/queues (besides admin tokens); open when unset and no `auth`. */
        admin_username: z.string().optional(),
        admin_password: z.string().optional(),
        /** Bull Board is read-only unless `write` (retry, remove, add and pause from the page). */
        admin_board: z.enum(['read', 'write']).default('read'),
        /** Origins allowed to call the job API from a browser: `*` (the original's) or a list. Never for /admin. */
        cors_origins: CorsOriginsSchema.default('*'),
        /** On shutdown, how long requests in flight may take before their connections are cut. */
        shutdown_grace: durationField().default(5000),
        /** A submit holds its job id under a lease it renews; a gateway that dies lets it lapse within this, and a retry takes over. */
        submit_lease: durationField().default(5000),
        /** How often the reconciler settles submits whose gateway died (re-queues or releases them). */
        reconcile_interval: durationField().default(5000),
      })
      .prefault({}),
    worker: z
      .strictObject({
        /** Runs of a job whose runner died mid-job, before it fails. */
        max_attempts: intField(1, 100).default(3),
        /** Jobs taken and staged ahead of the one in the runner. */
        prefetch: intField(0, 64).default(1),
        /** How often a worker publishes its state; it shows as not running after three missed beats. */
        heartbeat: durationField().default(2000),
        /** A runner must listen within this after it starts. */
        start_timeout: durationField().default(120_000),
        /** SIGTERM to SIGKILL of a bare sheep's runner that is stopped (docker sheep: their own `stop_timeout`, default 1 s). */
        stop_timeout: durationField().default(10_000),
        /** On shutdown, how long the job in hand may take before it goes back to the queue. */
        shutdown_grace: durationField().default(60_000),
        /** BullMQ lock of a job in hand; a dead worker's jobs are taken up again after it lapses. */
        lock_duration: durationField().default(30_000),
        /** Default runner time limit of a job (`timeout` on start-job or models.* win); none when unset. */
        job_timeout: durationField().optional(),
        /** Cap on any job's runner time limit, asked for or configured. */
        max_job_timeout: durationField().optional(),
        /** Default time a job may wait for a sheep; none when unset. */
        queue_timeout: durationField().optional(),
        /** Fallback poll of the queues, besides the wake-up each new job sends. */
        poll_interval: durationField().default(1000),
        /** Times a job may go back to its queue (storage away, a failure that could not be recorded) before it fails. */
        max_hand_backs: intField(1, 1000).default(10),
        /** First wait before a handed-back job runs again; doubles each time, up to a minute. */
        hand_back_delay: durationField().default(1000),
      })
      .prefault({}),
    /**
     * Per-model defaults, keyed by `name` or `name:version` (the version's
     * entry wins): `timeout` (runner time) and `queue_timeout` (wait for a sheep).
     */
    models: z
      .record(
        z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/, 'expected `name` or `name:version`'),
        z.strictObject({ timeout: durationField().optional(), queue_timeout: durationField().optional() }),
      )
      .default({}),
    /** How long finished jobs are kept (storage, Redis, queues); kept for good when unset, as in the original. */
    retention: z
      .strictObject({
        done: durationField().optional(),
        failed: durationField().optional(),
        /** Defaults to `failed`'s. */
        cancelled: durationField().optional(),
        /** How often the sweeper looks. */
        interval: durationField().default(60_000),
      })
      .prefault({}),
    /**
     * Webhooks (`webhook` on start-job): signed POSTs of a job's status.
     * Without `secret`, a start-job that asks for a webhook is refused.
     */
    webhooks: z
      .strictObject({
        /**
         * Signing key, Standard Webhooks style: `whsec_<base64>` (the bytes
         * after the prefix), or any string of 24 characters or more (its
         * UTF-8 bytes). None by default: webhooks are off.
         */
        secret: z.preprocess((value) => (value === '' ? undefined : value), z.string().refine(validWebhookSecret, WEBHOOK_SECRET_EXPECTED).optional()),
        /**
         * Hosts (names or addresses, no port) webhooks may go to; any public
         * host when empty (the default). A listed host may also be a private
         * or loopback address, which are refused otherwise.
         */
        allow_hosts: z.array(nonEmpty()).default([]),
        /** How long a delivery is retried (exponential backoff) before it is given up. */
        retry_for: durationField().default(3_600_000),
        /** Time limit of one try (connect to answer). */
        timeout: durationField().default(10_000),
        /** Deliveries each gateway sends at once. */
        concurrency: intField(1, 1000).default(10),
      })
      .prefault({}),
    /** API tokens; without them every route is open, as in the original. */
    auth: AuthSchema.optional(),
    /** Show exception types and tracebacks of failed jobs over HTTP (also env DEBUG=1). */
    debug: boolField().optional(),
  })
  .superRefine((config, ctx) => {
    const byPort = new Map<number, string>();
    for (const [id, sheep] of Object.entries(config.sheep)) {
      if (sheep.type === 'external') continue; // its port is on the runner's host (each pod's own localhost), not this one
      const other = byPort.get(sheep.port);
      if (other) ctx.addIssue({ code: 'custom', path: ['sheep', id, 'port'], message: `expected a port no other sheep uses (${other} has ${sheep.port})` });
      byPort.set(sheep.port, id);
    }
    const redis = config.redis;
    if (redis.cluster && redis.sentinels) ctx.addIssue({ code: 'custom', path: ['redis', 'cluster'], message: 'expected either `cluster` or `sentinels`, not both' });
    if (redis.cluster && (redis.min_replicas_ack ?? 0) > 0) {
      ctx.addIssue({ code: 'custom', path: ['redis', 'min_replicas_ack'], message: 'expected 0 with a cluster (WAIT counts the replicas of one node only)' });
    }
  })
  .transform((c) => ({
    dataRoot: c.data_root,
    registry: c.registry,
    storage: c.storage,
    logging: { level: c.logging.level, directory: c.logging.logging_directory },
    sheep: c.sheep,
    redis: { ...c.redis, minReplicasAck: c.redis.min_replicas_ack ?? (c.redis.sentinels ? 1 : 0) },
    gateway: {
      host: c.gateway.host,
      port: c.gateway.port,
      payloadLimit: c.gateway.payload_limit,
      uploadLimit: c.gateway.upload_limit,
      admin: c.gateway.admin_username ? { username: c.gateway.admin_username, password: c.gateway.admin_password ?? '' } : undefined,
      adminBoard: c.gateway.admin_board,
      corsOrigins: c.gateway.cors_origins,
      shutdownGraceMs: c.gateway.shutdown_grace,
      submitLeaseMs: c.gateway.submit_lease,
      reconcileIntervalMs: c.gateway.reconcile_interval,
    },
    worker: {
      maxAttempts: c.worker.max_attempts,
      prefetch: c.worker.prefetch,
      heartbeatMs: c.worker.heartbeat,
      startTimeoutMs: c.worker.start_timeout,
      stopTimeoutMs: c.worker.stop_timeout,
      shutdownGraceMs: c.worker.shutdown_grace,
      lockDurationMs: c.worker.lock_duration,
      pollIntervalMs: c.worker.poll_interval,
      jobTimeoutMs: c.worker.job_timeout,
      maxJobTimeoutMs: c.worker.max_job_timeout,
      queueTimeoutMs: c.worker.queue_timeout,
      maxHandBacks: c.worker.max_hand_backs,
      handBackDelayMs: c.worker.hand_back_delay,
    },
    webhooks: {
      secret: c.webhooks.secret,
      // Compared with URL host names: lowercase, IPv6 without brackets, no trailing dot.
      allowHosts: c.webhooks.allow_hosts.map((host) => host.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '')),
      retryForMs: c.webhooks.retry_for,
      timeoutMs: c.webhooks.timeout,
      concurrency: c.webhooks.concurrency,
    },
    auth: c.auth,
    models: Object.fromEntries(Object.entries(c.models).map(([key, m]) => [key, { timeoutMs: m.timeout, queueTimeoutMs: m.queue_timeout }])),
    retention: {
      doneMs: c.retention.done,
      failedMs: c.retention.failed,
      cancelledMs: c.retention.cancelled ?? c.retention.failed,
      intervalMs: c.retention.interval,
    },
    debug: c.debug ?? false,
  }));

export type ShepherdConfig = z.output<typeof ConfigSchema>;
export type StorageConfig = ShepherdConfig['storage'];
export type WorkerConfig = ShepherdConfig['worker'];
export type WebhooksConfig = ShepherdConfig['webhooks'];
