import { JOB_ID_RULES, JobStatusSchema, ModelSchema, StartJobRequestSchema } from '@shepherd/contracts';
import { zodToOpenApi, type OpenApiSchema } from './openapi-schema';

/**
 * The job id pattern of the `key` rule (filesystem and single-bucket
 * storage, the default), the looser of the two: bucket-per-job storage
 * allows only ids that also match the `bucket` rule. Mirrors
 * `checkJobId` in @shepherd/contracts (the test holds them together).
 */
export const JOB_ID_PATTERN = '^(?!.*\\.\\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$';

export const JOB_ID_DESCRIPTION =
  `The job id. Allowed: ${JOB_ID_RULES.key}. With bucket-per-job S3 storage the rule is stricter: ${JOB_ID_RULES.bucket}. ` +
  'On the GET routes an id the storage rule refuses answers 404; on start-job and uploads, 400.';

const object = (properties: Record<string, OpenApiSchema>, required = Object.keys(properties)): OpenApiSchema => ({
  type: 'object',
  properties,
  required,
  additionalProperties: false,
});

const model = zodToOpenApi(ModelSchema, 'output');

const startJob = zodToOpenApi(StartJobRequestSchema, 'input');
// The body's schema takes any non-empty id; the storage rule is checked next (400).
const startJobProperties = startJob.properties as Record<string, OpenApiSchema>;
startJobProperties.job_id = { ...startJobProperties.job_id, pattern: JOB_ID_PATTERN, description: JOB_ID_DESCRIPTION };

const jobStatus = zodToOpenApi(JobStatusSchema.omit({ submitted_by: true }), 'output');
const waiting = { type: 'integer', minimum: 0, description: 'Jobs waiting on its queue' };

/** Every named schema of the document: `#/components/schemas/<name>`. */
export const API_SCHEMAS = {
  Error: { ...object({ message: { type: 'string' } }), description: 'Every error answer, like the original: what went wrong, for a person' },
  StartJobRequest: startJob,
  Started: object({ success: { type: 'boolean', enum: [true] } }),
  Uploaded: object({ success: { type: 'boolean', enum: [true] }, file: { type: 'string', description: '`inputs/<path>`', example: 'inputs/image.png' } }),
  // `submitted_by` is never shown over HTTP (publicStatus).
  JobStatus: jobStatus,
  JobList: object({
    jobs: {
      type: 'array',
      items: {
        ...jobStatus,
        properties: { job_id: { type: 'string' }, ...(jobStatus.properties as object) },
        required: ['job_id', ...((jobStatus.required as string[] | undefined) ?? [])],
      },
    },
    next_cursor: { type: 'string', nullable: true, description: 'Pass back as `cursor` for the next page; null on the last' },
  }),
  NotReady: { ...object({ ready: { type: 'boolean', enum: [false] } }), description: 'The job is not done yet: ask again' },
  Health: object({ status: { type: 'string', enum: ['ok'] } }),
  Ready: object({
    ready: { type: 'boolean', description: 'Redis and storage both up' },
    redis: { type: 'string', enum: ['up', 'down'] },
    storage: { type: 'string', enum: ['up', 'down'] },
    sheep: { type: 'object', additionalProperties: { type: 'boolean' }, description: 'Each configured sheep: whether its worker is alive' },
  }),
  SheepStatus: object({
    sheep: {
      type: 'object',
      description: 'Each configured sheep by id',
      additionalProperties: object({
        running: { type: 'boolean' },
        model: { ...model, nullable: true, description: 'The model loaded, while running' },
        request: { type: 'string', nullable: true, description: 'The job in hand (admin tokens only, with auth)' },
        waiting: { ...waiting, description: 'Jobs pinned to this sheep, waiting' },
      }),
    },
    models: { type: 'object', description: 'Each model queue by `name:version`', additionalProperties: object({ waiting }) },
  }),
} satisfies Record<string, OpenApiSchema>;

export type ApiSchemaName = keyof typeof API_SCHEMAS;

export function schemaRef(name: ApiSchemaName): { $ref: string } {
  return { $ref: `#/components/schemas/${name}` };
}
