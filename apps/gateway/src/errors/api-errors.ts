/**
 * Errors the gateway answers with a status code of their own; the global
 * filter turns them (and the storage and Redis errors) into
 * `{"message": ...}` like the original.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const badRequest = (message: string) => new ApiError(400, message);
export const notFound = (message: string) => new ApiError(404, message);
export const conflict = (message: string) => new ApiError(409, message);
export const tooLarge = (message: string) => new ApiError(413, message);

export const unknownJob = (jobId: string) => notFound(`Data for job \`${jobId}\` does not exist`);
export const unavailable = (message: string) => new ApiError(503, message);
