import { Inject, Injectable } from '@nestjs/common';
import { Counter, Gauge, Registry } from 'prom-client';
import type { ShepherdConfig } from '@shepherd/config';
import { modelKey, sheepQueueName, type Model } from '@shepherd/contracts';
import { JobQueues, MetricsStore, SheepRegistry } from '@shepherd/queue';
import { CONFIG } from '../core/tokens';

/**
 * Prometheus metrics of the whole deployment: what the gateway counts
 * itself, queue depths read from BullMQ at scrape time, and the counters
 * workers push through Redis (so workers on other machines need no scrape
 * target of their own).
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  private readonly submitted = new Counter({ name: 'shepherd_jobs_submitted_total', help: 'Jobs accepted by start-job', labelNames: ['model'], registers: [this.registry] });

  constructor(
    @Inject(CONFIG) private readonly config: ShepherdConfig,
    queues: JobQueues,
    sheep: SheepRegistry,
    private readonly metrics: MetricsStore,
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
          const counts = await queues.queue(name).getJobCounts('waiting', 'active', 'failed', 'completed');
          for (const [state, count] of Object.entries(counts)) this.set({ queue: name, state }, count);
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
      help: 'Jobs finished by the workers (a counter kept in Redis)',
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
  }

  /** Everything in the Prometheus text format: the registry, then the workers' stage histograms. */
  async render(): Promise<string> {
    const [registered, stages] = await Promise.all([this.registry.metrics(), this.metrics.stages()]);
    const name = 'shepherd_job_stage_seconds';
    const lines = [`# HELP ${name} Time a job spends in each stage on a sheep: queue_wait, input_staging, runner, output_upload`, `# TYPE ${name} histogram`];
    for (const h of stages) {
      const labels = `stage="${h.stage}",sheep="${h.sheep}"`;
      for (const b of h.buckets) lines.push(`${name}_bucket{${labels},le="${b.le === Infinity ? '+Inf' : b.le}"} ${b.count}`);
      lines.push(`${name}_sum{${labels}} ${h.sum}`, `${name}_count{${labels}} ${h.count}`);
    }
    return `${registered}\n${lines.join('\n')}\n`;
  }

  jobSubmitted(model: Model): void {
    this.submitted.inc({ model: modelKey(model) });
  }
}
