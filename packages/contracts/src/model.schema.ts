import { z } from 'zod';

// A model names a Docker image (`<registry>/<name>:<version>`) or, for a bare
// sheep, the directory `<working_directory>/<name>/<version>/`. The patterns
// keep both safe: Docker's repository and tag grammar, and no segment that
// could climb out of the working directory (every segment starts with a
// letter or digit, so `..` cannot appear).
export const MODEL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;
export const MODEL_VERSION_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

export const ModelSchema = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(200)
    .regex(MODEL_NAME_PATTERN, 'letters, digits, ".", "_", "-", segments separated by "/"'),
  version: z
    .string()
    .min(1)
    .max(128)
    .regex(MODEL_VERSION_PATTERN, 'letters, digits, ".", "_", "-", not starting with "." or "-"'),
});

export type Model = z.infer<typeof ModelSchema>;

export function modelKey(model: Model): string {
  return `${model.name}:${model.version}`;
}
