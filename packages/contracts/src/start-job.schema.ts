import { z } from 'zod';
import { ModelSchema } from './model.schema';

/** Body of `POST /start-job`, exactly the original's fields. */
export const StartJobRequestSchema = z.strictObject({
  job_id: z.string().min(1, 'must not be empty'),
  model: ModelSchema,
  payload: z.string().nullish(),
  sheep_id: z.string().min(1).nullish(),
});
export type StartJobRequest = z.infer<typeof StartJobRequestSchema>;
