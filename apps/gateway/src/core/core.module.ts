import {
  Global,
  Inject,
  Logger,
  Module,
  type BeforeApplicationShutdown,
  type DynamicModule,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Server } from 'node:http';
import type { ShepherdConfig } from '@shepherd/config';
import { createRedis, whenReady, type RedisClient, JobQueues, MetricsStore, RedisKeys, SheepRegistry, StatusEvents, StatusStore, UploadsInFlight, WaitingJobs, JobIndex, StartDeadlines } from '@shepherd/queue';
import { createStorage, type JobStorage } from '@shepherd/storage';
import { CONFIG, REDIS, STORAGE, SUBSCRIBER } from './tokens';

/** The connections and stores every part of the gateway shares. */
@Global()
@Module({})
export class CoreModule implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('Shutdown');

  static forRoot(config: ShepherdConfig): DynamicModule {
    const keys = new RedisKeys(config.redis.prefix, { cluster: Boolean(config.redis.cluster) });
    return {
      module: CoreModule,
      providers: [
        { provide: CONFIG, useValue: config },
        { provide: RedisKeys, useValue: keys },
        { provide: STORAGE, useFactory: () => createStorage(config.storage) },
        { provide: REDIS, useFactory: () => createRedis(config.redis, 'producer') },
        { provide: SUBSCRIBER, useFactory: () => createRedis(config.redis, 'subscriber') },
        { provide: StatusStore, inject: [REDIS, STORAGE], useFactory: (r: RedisClient, s: JobStorage) => new StatusStore(r, s, keys) },
        { provide: StatusEvents, inject: [SUBSCRIBER], useFactory: (r: RedisClient) => new StatusEvents(r, keys) },
        { provide: JobQueues, inject: [REDIS], useFactory: (r: RedisClient) => new JobQueues(r, keys) },
        { provide: SheepRegistry, inject: [REDIS], useFactory: (r: RedisClient) => new SheepRegistry(r, keys) },
        { provide: MetricsStore, inject: [REDIS], useFactory: (r: RedisClient) => new MetricsStore(r, keys) },
        { provide: WaitingJobs, inject: [REDIS], useFactory: (r: RedisClient) => new WaitingJobs(r, keys) },
        { provide: UploadsInFlight, inject: [REDIS], useFactory: (r: RedisClient) => new UploadsInFlight(r, keys) },
        { provide: JobIndex, inject: [REDIS], useFactory: (r: RedisClient) => new JobIndex(r, keys) },
        { provide: StartDeadlines, inject: [REDIS], useFactory: (r: RedisClient) => new StartDeadlines(r, keys) },
      ],
      exports: [
        CONFIG,
        STORAGE,
        REDIS,
        SUBSCRIBER,
        RedisKeys,
        StatusStore,
        StatusEvents,
        JobQueues,
        SheepRegistry,
        MetricsStore,
        WaitingJobs,
        UploadsInFlight,
        JobIndex,
        StartDeadlines,
      ],
    };
  }

  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    private readonly adapterHost: HttpAdapterHost,
    @Inject(STORAGE) private readonly storage: JobStorage,
    @Inject(REDIS) private readonly redis: RedisClient,
    @Inject(SUBSCRIBER) private readonly subscriber: RedisClient,
    private readonly events: StatusEvents,
    private readonly queues: JobQueues,
  ) {}

  async onModuleInit(): Promise<void> {
    // Redis may be down at start: the gateway still starts and answers 503
    // until it is back. The subscription waits in ioredis' offline queue.
    this.events.start().catch(() => undefined);
    await whenReady(this.redis, 5000);
  }

  /**
   * Nest closes the listener next and waits for the requests in flight;
   * a client that never finishes its upload or never reads its answer must
   * not hold the process past the grace period.
   */
  beforeApplicationShutdown(): void {
    const server = this.adapterHost.httpAdapter?.getHttpServer() as Server | undefined;
    if (!server) return;
    setTimeout(() => {
      server.getConnections((_error, count) => {
        if (count > 0) this.logger.warn(`cutting ${count} connection(s) still open ${this.config.gateway.shutdownGraceMs} ms after shutdown began`);
        server.closeAllConnections();
      });
    }, this.config.gateway.shutdownGraceMs).unref();
  }

  /** After the HTTP server closed: nothing in flight needs these any more. */
  async onApplicationShutdown(): Promise<void> {
    await this.queues.close().catch(() => undefined);
    await this.storage.close().catch(() => undefined);
    this.subscriber.disconnect();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
