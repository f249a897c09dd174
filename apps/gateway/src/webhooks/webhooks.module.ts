import { Module } from '@nestjs/common';
import { WebhookDeliveries } from './webhook-deliveries';

/** Webhooks: the outbox on the gateway's status writes and the delivery worker (see WebhookDeliveries). */
@Module({ providers: [WebhookDeliveries] })
export class WebhooksModule {}
