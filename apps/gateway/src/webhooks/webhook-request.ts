import type { ShepherdConfig } from '@shepherd/config';
import type { JobLife, StartJobRequest } from '@shepherd/contracts';
import { badRequest } from '../errors/api-errors';
import { checkTarget, systemLookup, type HostLookup } from './webhook-target';

/**
 * The webhook a start-job asks for, checked (400 naming the reason): webhooks
 * configured (a signing secret), an http(s) URL to an allowed host that
 * resolves to no private address unless listed. Null when none is asked.
 * `webhook_events` defaults to `completed`.
 */
export async function requestedWebhook(request: StartJobRequest, config: ShepherdConfig, lookup: HostLookup = systemLookup): Promise<JobLife['webhook']> {
  if (!request.webhook) {
    if (request.webhook_events?.length) throw badRequest('Invalid job request: webhook_events: needs a `webhook` URL');
    return null;
  }
  if (!config.webhooks.secret) {
    throw badRequest('Invalid job request: webhook: webhooks are not enabled on this server (no webhooks.secret in its config to sign them with)');
  }
  const target = await checkTarget(request.webhook, config.webhooks.allowHosts, lookup);
  if (!target.ok) throw badRequest(`Invalid job request: webhook: ${target.reason}`);
  return { url: request.webhook, events: [...new Set(request.webhook_events ?? ['completed'])] };
}
