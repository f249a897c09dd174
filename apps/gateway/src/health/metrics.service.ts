import { Inject, Injectable } from '@nestjs/common';
import { Counter, Gauge, Registry } from 'prom-client';
import type { ShepherdConfig } from '@shepherd/config';
import { modelKey, sheepQueueName, type Model } from '@shepherd/contracts';
import type { Redis } from 'ioredis';
import { JobQueues, MetricsStore, RedisKeys, SheepRegistry, WebhookCounts } from '@shepherd/queue';
import { CONFIG, REDIS } from '../core/tokens';

/** Distinct `model` labels of the submitted counter. */
const MAX_MODEL_LABELS = 1000;

/**
 * Prometheus metrics of the whole deployment: what the gateway counts
 * itself, queue depths read from BullMQ at scrape time, and the counters
 * workers push through Redis (so workers on other machines need no scrape
 * target of their own).
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  private readonly labelled = new Set<string>();
  private readonly submitted = new Counter({ name: 'shepherd_jobs_submitted_total', help: 'Jobs accepted by start-job', labelNames: ['model'], registers: [this.registry] });

  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    queues: JobQueues,
    sheep: SheepRegistry,
    private readonly metrics: MetricsStore,
    @Inject(REDIS) redis: Redis,
    keys: RedisKeys,
  ) {
    const sheepIds = Object.keys(config.sheep);
    new Gauge({
      name: 'shepherd_queue_jobs',
      help: 'Jobs in each queue by state',
      labelNames: ['queue', 'state'],
      registers: [this.registry],
      async collect() {
        this.reset();
        const names = [...sheepIds.map(sheepQueueName), ...(await queues.modelQueueNames())];
        for (const name of names) {
          // Every job carries a priority, so waiting jobs sit in BullMQ's prioritized set.
          const counts = await queues.queue(name).getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'failed', 'completed');
          const { prioritized = 0, waiting = 0, ...rest } = counts;
          this.set({ queue: name, state: 'waiting' }, waiting + prioritized);
          for (const [state, count] of Object.entries(rest)) this.set({ queue: name, state }, count);
        }
      },
    });
    new Gauge({
      name: 'shepherd_sheep_up',
      help: '1 while the sheep’s worker beats',
      labelNames: ['sheep'],
      registers: [this.registry],
      async collect() {
        const states = await sheep.read(sheepIds);
        for (const id of sheepIds) this.set({ sheep: id }, states.get(id) ? 1 : 0);
      },
    });
    new Gauge({
      name: 'shepherd_jobs_finished_total',
      help: 'Jobs finished by the workers, by outcome: done, failed, cancelled, timed_out (a counter kept in Redis)',
      labelNames: ['sheep', 'model', 'status'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const row of await metrics.finished()) this.set({ sheep: row.sheep, model: row.model, status: row.status }, row.count);
      },
    });
    new Gauge({
      name: 'shepherd_model_loads_total',
      help: 'Runner starts per sheep, first loads and swaps (a counter kept in Redis)',
      labelNames: ['sheep'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const [id, count] of Object.entries(await metrics.modelLoads())) this.set({ sheep: id }, count);
      },
    });
    const webhooks = new WebhookCounts(redis, keys);
    new Gauge({
      name: 'shepherd_webhook_deliveries_total',
      help: 'Webhook tries by outcome: delivered, retried (a try failed, another follows), failed (the last try failed), refused (host not allowed or private) (a counter kept in Redis)',
      labelNames: ['outcome'],
      registers: [this.registry],
      async collect() {
        for (const [outcome, count] of Object.entries(await webhooks.read())) this.set({ outcome }, count);
      },
    });
  }

  /** Everything in the Prometheus text format: the registry, then the workers' stage histograms. */
  async render(): Promise<string> {
    const [registered, stages] = await Promise.all([this.registry.metrics(), this.metrics.stages()]);
    const name = 'shepherd_job_stage_seconds';
    const lines = [`# HELP ${name} Time a job spends in each stage on a sheep: queue_wait, input_staging, runner, output_upload`, `# TYPE ${name} histogram`];
    const byPriority = 'shepherd_queue_wait_by_priority_seconds';
    const banded = [`# HELP ${byPriority} Time jobs waited for a sheep, by priority band (high > 0, normal = 0, low < 0)`, `# TYPE ${byPriority} histogram`];
    for (const h of stages) {
      if (h.stage === 'queue_wait_by_priority') {
        const labels = `priority="${h.sheep}"`;
        for (const b of h.buckets) banded.push(`${byPriority}_bucket{${labels},le="${b.le === Infinity ? '+Inf' : b.le}"} ${b.count}`);
        banded.push(`${byPriority}_sum{${labels}} ${h.sum}`, `${byPriority}_count{${labels}} ${h.count}`);
        continue;
      }
      const labels = `stage="${h.stage}",sheep="${h.sheep}"`;
      for (const b of h.buckets) lines.push(`${name}_bucket{${labels},le="${b.le === Infinity ? '+Inf' : b.le}"} ${b.count}`);
      lines.push(`${name}_sum{${labels}} ${h.sum}`, `${name}_count{${labels}} ${h.count}`);
    }
    return `${registered}\n${lines.join('\n')}\n${banded.join('\n')}\n`;
  }

  jobSubmitted(model: Model): void {
    // Model names come from clients: past a bound, new ones share one label so the registry cannot grow for ever.
    const key = modelKey(model);
    if (!this.labelled.has(key) && this.labelled.size >= MAX_MODEL_LABELS) return this.submitted.inc({ model: 'other' });
    this.labelled.add(key);
    this.submitted.inc({ model: key });
  }
}
