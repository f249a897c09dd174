import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import { API_SCHEMAS } from './api-schemas';

/** The OpenAPI 3.0 document of the routes, with the named schemas the decorators refer to. */
export function buildApiDocument(app: INestApplication): OpenAPIObject {
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setOpenAPIVersion('3.0.3')
      .setTitle('Shepherd')
      .setDescription(
        'Runs ML models on this machine’s CPUs and GPUs through a job queue.\n\n' +
          'Every error is answered as `{"message": "..."}`. With `auth.tokens` configured, every route but `/health` needs ' +
          '`Authorization: Bearer <token>` with the scope the route names.',
      )
      .setVersion('0.1.0')
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'An API token from auth.tokens (when configured)' }, 'bearer')
      .addSecurityRequirements('bearer')
      .build(),
  );
  document.components = { ...document.components, schemas: { ...document.components?.schemas, ...API_SCHEMAS } };
  return finishDocument(document);
}

/**
 * A route with aliases (`result` and `result/*file`) gets the same
 * parameters on each path: a path parameter its template does not name is
 * dropped there.
 */
export function finishDocument(document: OpenAPIObject): OpenAPIObject {
  for (const [path, item] of Object.entries(document.paths)) {
    const named = new Set([...path.matchAll(/\{([^}]+)\}/g)].map((match) => match[1]));
    for (const operation of [item.get, item.put, item.post, item.delete, item.patch, item.head, item.options]) {
      if (!operation?.parameters) continue;
      operation.parameters = operation.parameters.filter((parameter) => !('in' in parameter) || parameter.in !== 'path' || named.has(parameter.name));
    }
  }
  return document;
}
