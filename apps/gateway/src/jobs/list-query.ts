import { z } from 'zod';
import { JobStateSchema } from '@shepherd/contracts';

/** The query of `GET /jobs`. */
export const ListQuerySchema = z.strictObject({
  status: JobStateSchema.optional(),
  model: z.string().min(1).max(400).optional(),
  sheep: z.string().min(1).max(64).optional(),
  limit: z
    .string()
    .regex(/^\d+$/, 'expected a whole number')
    .transform(Number)
    .pipe(z.number().int().min(1).max(1000))
    .default(100)
    .describe('Jobs per page: 1 to 1000, default 100'),
  cursor: z.string().min(1).max(1000).optional().describe('The `next_cursor` of the previous page, as it was'),
});
