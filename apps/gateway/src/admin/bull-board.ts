import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { NextFunction, Request, Response } from 'express';
import { timingSafeEqual } from 'node:crypto';
import type { ShepherdConfig } from '@shepherd/config';
import { sheepQueueName } from '@shepherd/contracts';
import { JobQueues } from '@shepherd/queue';

export const BOARD_PATH = '/admin/queues';
/** How stale the board's list of queues may be: model queues appear while running. */
const REFRESH_MS = 2000;

/**
 * Bull Board at /admin/queues: every sheep queue and every model queue,
 * including those created after start (the list is refreshed on use).
 * With `auth`, an admin token lets in (the auth middleware checks it; as a
 * Basic auth password for browsers); without, gateway.admin_username's
 * basic auth does, when set. Read-only unless `gateway.admin_board: write`:
 * a retried or deleted job would bypass the job life (a done job run again,
 * a queued status left with no queue entry).
 */
export function mountBullBoard(app: NestExpressApplication, config: ShepherdConfig): void {
  const readOnly = config.gateway.adminBoard !== 'write';
  const queues = app.get(JobQueues);
  const adapter = new ExpressAdapter();
  adapter.setBasePath(BOARD_PATH);
  const board = createBullBoard({ queues: [], serverAdapter: adapter });
  let refreshedAt = 0;
  const refresh = async () => {
    if (Date.now() - refreshedAt < REFRESH_MS) return;
    refreshedAt = Date.now();
    const names = [...Object.keys(config.sheep).map(sheepQueueName), ...(await queues.modelQueueNames().catch(() => []))];
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- bull-board's types name its own bullmq copy
    board.replaceQueues(names.map((name) => new BullMQAdapter(queues.queue(name) as any, { readOnlyMode: readOnly, allowRetries: !readOnly, displayName: name })));
  };
  const adminAuth = config.auth ? undefined : config.gateway.admin;
  app.use(BOARD_PATH, basicAuth(adminAuth), (req: Request, res: Response, next: NextFunction) => {
    if (readOnly && req.method !== 'GET' && req.method !== 'HEAD') {
      res.status(405).json({ message: 'Bull Board is read-only (gateway.admin_board: write allows changes)' });
      return;
    }
    refresh().then(() => next(), next);
  }, adapter.getRouter());
}

function basicAuth(admin: { username: string; password: string } | undefined) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (!admin) return next();
    const [scheme, encoded] = (req.headers.authorization ?? '').split(' ');
    const [user, ...rest] = Buffer.from(encoded ?? '', 'base64').toString().split(':');
    if (scheme === 'Basic' && same(user ?? '', admin.username) && same(rest.join(':'), admin.password)) return next();
    res.setHeader('WWW-Authenticate', 'Basic realm="Shepherd admin"');
    res.status(401).json({ message: 'Authentication required' });
  };
}

function same(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}
