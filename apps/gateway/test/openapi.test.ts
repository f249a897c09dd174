import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { checkJobId, jobStatus } from '@shepherd/contracts';
import { uniqueId } from '@shepherd/testing';
import { JOB_ID_PATTERN } from '../src/openapi/api-schemas';
import { toOpenApi30 } from '../src/openapi/openapi-schema';
import { model, postJson, startGateway, storageSection, type Harness } from './harness';

// The document served at /docs-json, checked three ways: valid OpenAPI 3.0
// (a validator from npm, with its schemas shipped in the package), every
// route the app serves is in it, and real answers of every route (status,
// media type, JSON body) are what it declares.

type Schema = Record<string, unknown>;
interface Operation {
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: Schema }>;
  requestBody?: { content: Record<string, { schema: Schema }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: Schema }> }>;
  security?: unknown[];
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema>; securitySchemes: Record<string, Schema> };
  security?: unknown[];
}

/** An answer, its body read once. */
interface Answered {
  status: number;
  headers: Headers;
  body: string;
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head'];
/** Served by SwaggerModule and Bull Board, not API routes. */
const NOT_API = /^\/(docs|admin)\b/;

/** The document's validator is an ES module: it runs in a child Node, offline. */
const VALIDATE = `
import { Validator } from '@seriousme/openapi-schema-validator';
let text = '';
for await (const chunk of process.stdin) text += chunk;
const validator = new Validator();
const result = await validator.validate(JSON.parse(text));
process.stdout.write(JSON.stringify({ valid: result.valid, version: validator.version, errors: result.errors }));
`;

function validateDocument(document: unknown): { valid: boolean; version: string; errors?: unknown } {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', VALIDATE], { cwd: join(__dirname, '..'), input: JSON.stringify(document) });
  return JSON.parse(out.toString()) as { valid: boolean; version: string; errors?: unknown };
}

/** `/jobs/:id/result/*file` (Express) → `/jobs/{id}/result/{file}` (OpenAPI). */
const asTemplate = (path: string) => path.replace(/[:*](\w+)/g, '{$1}');

function walk(value: unknown, visit: (node: Record<string, unknown>) => void): void {
  if (Array.isArray(value)) value.forEach((item) => walk(item, visit));
  else if (typeof value === 'object' && value !== null) {
    visit(value as Record<string, unknown>);
    Object.values(value).forEach((item) => walk(item, visit));
  }
}

describe('the OpenAPI document', () => {
  let gw: Harness;
  let doc: Document;
  let ajv: Ajv;
  /** `METHOD template status` of every answer checked against the document. */
  const seen = new Set<string>();

  beforeAll(async () => {
    gw = await startGateway({ storage: storageSection('filesystem'), gateway: { payload_limit: 4096, upload_limit: 1024 } });
    const answer = await fetch(`${gw.url}/docs-json`);
    expect(answer.status).toBe(200);
    doc = (await answer.json()) as Document;
    ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
  });
  afterAll(async () => gw.close());

  /**
   * Sends a request to a route of the document and checks the answer
   * against it: the status is declared for the operation, the media type is
   * one it declares, and a JSON body validates against the declared schema.
   */
  async function answer(method: string, template: string, url: string, init: RequestInit = {}): Promise<Answered> {
    const operation = doc.paths[template]?.[method];
    if (!operation) throw new Error(`${method.toUpperCase()} ${template} is not in the document`);
    const response = await fetch(`${gw.url}${url}`, { ...init, method: method.toUpperCase() });
    const where = `${method.toUpperCase()} ${url} → ${response.status}`;
    const declared = operation.responses[String(response.status)];
    expect({ where, declared: Boolean(declared) }).toEqual({ where, declared: true });
    seen.add(`${method} ${template} ${response.status}`);
    const text = await response.text();
    if (!declared!.content) {
      expect({ where, body: text }).toEqual({ where, body: '' });
      return { status: response.status, headers: response.headers, body: text };
    }
    const type = (response.headers.get('content-type') ?? '').split(';')[0]!.trim();
    const media = Object.keys(declared!.content).find((key) => key === type || key === '*/*' || (key.endsWith('/*') && type.startsWith(key.slice(0, -1))));
    expect({ where, type, media: media ?? 'none declared' }).toEqual({ where, type, media: expect.any(String) });
    if (media === 'application/json') {
      const validate = ajv.compile({ ...declared!.content[media]!.schema, components: doc.components });
      const body: unknown = JSON.parse(text);
      expect({ where, body, errors: validate(body) ? null : validate.errors }).toEqual({ where, body, errors: null });
    }
    return { status: response.status, headers: response.headers, body: text };
  }

  const json = (body: unknown): RequestInit => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const start = (body: unknown) => answer('post', '/start-job', '/start-job', json(body));

  it('is a valid OpenAPI 3.0 document, by a validator from npm', () => {
    const result = validateDocument(doc);
    expect(result).toEqual({ valid: true, version: '3.0' });
    // A wrong document is refused: the validator really looks.
    expect(validateDocument({ ...doc, paths: { '/x': { get: { responses: { 200: { content: 'not an object' } } } } } }).valid).toBe(false);
  });

  it('uses 3.0 schemas only: no type lists, no $schema, nullable beside a type', () => {
    expect(doc.openapi).toMatch(/^3\.0\.\d+$/);
    walk(doc, (node) => {
      expect(node).not.toHaveProperty('$schema');
      expect(node).not.toHaveProperty('$defs');
      expect(node).not.toHaveProperty('const');
      if ('type' in node && typeof node.type !== 'object') expect(typeof node.type).toBe('string');
      if (node.nullable === true) expect(typeof node.type).toBe('string');
    });
  });

  it('declares each path parameter of a template, and only those, with a schema', () => {
    for (const [path, item] of Object.entries(doc.paths)) {
      const named = [...path.matchAll(/\{(\w+)\}/g)].map((match) => match[1]).sort();
      for (const [method, operation] of Object.entries(item)) {
        const declared = (operation.parameters ?? []).filter((parameter) => parameter.in === 'path');
        expect({ path, method, params: declared.map((parameter) => parameter.name).sort() }).toEqual({ path, method, params: named });
        for (const parameter of declared) expect({ path, parameter: parameter.name, required: parameter.required, type: parameter.schema?.type }).toEqual({ path, parameter: parameter.name, required: true, type: 'string' });
      }
    }
  });

  it('documents the job id as the key rule, which checkJobId agrees with', () => {
    const id = doc.paths['/jobs/{id}/status']!.get!.parameters!.find((parameter) => parameter.name === 'id')!;
    expect(id.schema?.pattern).toBe(JOB_ID_PATTERN);
    const pattern = new RegExp(JOB_ID_PATTERN);
    const samples = ['a', 'job-1', 'Job_1.2', 'a'.repeat(128), 'a'.repeat(129), '-a', '.a', '_a', 'a..b', 'a.b', 'a b', 'a/b', '', 'é', '1.2.3.4', 'UPPER'];
    for (const sample of samples) expect({ sample, documented: pattern.test(sample) }).toEqual({ sample, documented: checkJobId(sample, 'key') === null });
    // The bucket rule is stricter: every id it takes, the documented pattern takes too.
    for (const sample of samples) if (checkJobId(sample, 'bucket') === null) expect(pattern.test(sample)).toBe(true);
  });

  it('declares bearer auth on every operation but /health, and request bodies', () => {
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.security).toEqual([{ bearer: [] }]);
    expect(doc.paths['/health']!.get!.security).toEqual([]);
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        if (path !== '/health') expect({ path, method, security: operation.security }).toEqual({ path, method, security: undefined });
        if (path !== '/health') expect({ path, method, statuses: Object.keys(operation.responses) }).toEqual({ path, method, statuses: expect.arrayContaining(['401', '403', '429', '503']) });
      }
    }
    expect(doc.paths['/start-job']!.post!.requestBody!.content['application/json']!.schema).toEqual({ $ref: '#/components/schemas/StartJobRequest' });
    expect(doc.paths['/jobs/{id}/inputs/{path}']!.put!.requestBody!.content['application/octet-stream']!.schema).toEqual({ type: 'string', format: 'binary' });
  });

  it('has every route the app serves, and nothing it does not', () => {
    const router = (gw.app.getHttpAdapter().getInstance() as { router: { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> } }).router;
    // A route for every HTTP method (`{/*splat}`, acl to unsubscribe) is Nest middleware, not an API route.
    const served = router.stack.flatMap((layer) =>
      layer.route && !NOT_API.test(layer.route.path) && !layer.route.methods['m-search']
        ? Object.keys(layer.route.methods).filter((method) => METHODS.includes(method)).map((method) => `${method} ${asTemplate(layer.route!.path)}`)
        : [],
    );
    const documented = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`));
    expect(served.length).toBeGreaterThan(8);
    expect([...new Set(served)].sort()).toEqual(documented.sort());
  });

  it('answers health, readiness, sheep and metrics as documented', async () => {
    await answer('get', '/health', '/health');
    expect((await answer('get', '/ready', '/ready')).status).toBe(200);
    await answer('get', '/status', '/status');
    const metrics = await answer('get', '/metrics', '/metrics');
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
  });

  it('answers start-job as documented: 200, 400, 404, 409, 413', async () => {
    const jobId = uniqueId('job');
    expect((await start({ job_id: jobId, model, payload: '{}' })).status).toBe(200);
    expect((await start({ job_id: jobId, model, payload: '{}' })).status).toBe(409);
    expect((await start({ job_id: uniqueId('job'), model: { name: '../x' } })).status).toBe(400);
    expect((await start({ job_id: 'no spaces', model, payload: '{}' })).status).toBe(400);
    expect((await answer('post', '/start-job', '/start-job', { body: '{"job_id": ' })).status).toBe(400);
    expect((await start({ job_id: uniqueId('job'), model, payload: '{}', sheep_id: 'nobody' })).status).toBe(404);
    expect((await start({ job_id: uniqueId('job'), model })).status).toBe(404);
    expect((await start({ job_id: uniqueId('job'), model, payload: 'x'.repeat(5000) })).status).toBe(413);
  });

  it('answers uploads as documented: 201, 400, 409, 413', async () => {
    const jobId = uniqueId('job');
    const put = (id: string, path: string, body: string) =>
      answer('put', '/jobs/{id}/inputs/{path}', `/jobs/${id}/inputs/${path}`, { headers: { 'content-type': 'application/octet-stream' }, body });
    expect((await put(jobId, 'dir/image.bin', 'bytes')).status).toBe(201);
    expect((await put('bad id!', 'file', 'bytes')).status).toBe(400);
    expect((await put(uniqueId('job'), 'file', 'x'.repeat(2000))).status).toBe(413);
    expect((await start({ job_id: jobId, model })).status).toBe(200);
    expect((await put(jobId, 'late', 'bytes')).status).toBe(409);
    // Inputs: with and without a file name, and a missing one.
    expect((await answer('get', '/jobs/{id}/input/{file}', `/jobs/${jobId}/input/dir/image.bin`)).status).toBe(200);
    expect((await answer('get', '/jobs/{id}/input/{file}', `/jobs/${jobId}/input/missing`)).status).toBe(404);
    const inline = uniqueId('job');
    await start({ job_id: inline, model, payload: '{"x": 1}' });
    expect((await answer('get', '/jobs/{id}/input', `/jobs/${inline}/input`)).body).toBe('{"x": 1}');
  });

  it('answers a path with a `..` segment with 400', async () => {
    // fetch resolves `..` itself: send the path as written.
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${gw.url}/jobs/job-1/inputs/a/%2E%2E/b`, { method: 'PUT', headers: { 'content-length': '1' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end('x');
    });
    expect(doc.paths['/jobs/{id}/inputs/{path}']!.put!.responses[String(status)]).toBeDefined();
  });

  it('answers status, wait_ready and result through a job’s life as documented: 200, 202, 400, 404, 500', async () => {
    const jobId = uniqueId('job');
    await start({ job_id: jobId, model, payload: '{}' });
    expect((await answer('get', '/jobs/{id}/status', `/jobs/${jobId}/status`)).status).toBe(200);
    expect((await answer('get', '/jobs/{id}/result', `/jobs/${jobId}/result`)).status).toBe(202);
    expect((await answer('get', '/jobs/{id}/result/{file}', `/jobs/${jobId}/result/page.json`)).status).toBe(202);
    expect((await answer('get', '/jobs/{id}/wait_ready', `/jobs/${jobId}/wait_ready?timeout=0.05`)).status).toBe(200);
    expect((await answer('get', '/jobs/{id}/wait_ready', `/jobs/${jobId}/wait_ready?timeout=1e3`)).status).toBe(400);

    const life = { model, enqueuedAt: new Date().toISOString() };
    await gw.statuses.write(jobId, jobStatus.processing(life));
    expect((await answer('get', '/jobs/{id}/status', `/jobs/${jobId}/status`)).status).toBe(200);
    await gw.storage.putFile(jobId, 'outputs', 'output', Readable.from([Buffer.from('{"result": 1}')]), 13);
    await gw.storage.putFile(jobId, 'outputs', 'page.json', Readable.from([Buffer.from('[]')]), 2);
    await gw.statuses.write(jobId, jobStatus.done({ ...life, startedAt: new Date().toISOString() }));
    expect((await answer('get', '/jobs/{id}/wait_ready', `/jobs/${jobId}/wait_ready`)).status).toBe(200);
    expect((await answer('get', '/jobs/{id}/status', `/jobs/${jobId}/status`)).status).toBe(200);
    expect((await answer('get', '/jobs/{id}/result', `/jobs/${jobId}/result`)).body).toBe('{"result": 1}');
    expect((await answer('get', '/jobs/{id}/result/{file}', `/jobs/${jobId}/result/page.json`)).status).toBe(200);
    expect((await answer('get', '/jobs/{id}/result/{file}', `/jobs/${jobId}/result/missing`)).status).toBe(404);
    const events = await answer('get', '/jobs/{id}/events', `/jobs/${jobId}/events`);
    expect(events.body).toMatch(/^id: \d+-\d+\nevent: status\ndata: \{.*\n\n$/s);
    expect((await answer('get', '/jobs/{id}/events', `/jobs/${jobId}/events`, { headers: { 'last-event-id': 'x' } })).status).toBe(400);

    const failed = uniqueId('job');
    await start({ job_id: failed, model, payload: '{}' });
    await gw.statuses.write(failed, jobStatus.processing(life));
    await gw.statuses.write(failed, jobStatus.failed(life, { message: 'ValueError: bad input', exception_type: 'ValueError', exception_traceback: 'Traceback...' }));
    const result = await answer('get', '/jobs/{id}/result', `/jobs/${failed}/result`);
    expect(result.status).toBe(500);
    expect(JSON.parse(result.body)).toEqual({ message: 'ValueError: bad input' });
    expect((await answer('get', '/jobs/{id}/status', `/jobs/${failed}/status`)).status).toBe(200);

    for (const id of [uniqueId('job'), 'not..valid']) {
      for (const route of ['status', 'wait_ready', 'result', 'input', 'events']) {
        expect((await answer('get', `/jobs/{id}/${route}`, `/jobs/${id}/${route}`)).status).toBe(404);
      }
    }
  });

  it('answers list, cancel and delete as documented: 200, 204, 400, 404, 409', async () => {
    const jobId = uniqueId('job');
    await start({ job_id: jobId, model, payload: '{}' });
    const list = await answer('get', '/jobs', `/jobs?limit=5&status=queued`);
    expect(list.status).toBe(200);
    expect((JSON.parse(list.body) as { jobs: unknown[] }).jobs.length).toBeGreaterThan(0);
    expect((await answer('get', '/jobs', '/jobs?limit=abc')).status).toBe(400);
    expect((await answer('get', '/jobs', '/jobs?nonsense=1')).status).toBe(400);
    expect((await answer('delete', '/jobs/{id}', `/jobs/${jobId}`)).status).toBe(409);
    expect((await answer('post', '/jobs/{id}/cancel', `/jobs/${jobId}/cancel`)).status).toBe(200);
    expect((await answer('post', '/jobs/{id}/cancel', `/jobs/${jobId}/cancel`)).status).toBe(409);
    expect((await answer('get', '/jobs/{id}/result', `/jobs/${jobId}/result`)).status).toBe(409);
    expect((await answer('get', '/jobs/{id}/status', `/jobs/${jobId}/status`)).status).toBe(200);
    expect((await answer('get', '/jobs', '/jobs?status=cancelled')).status).toBe(200);
    expect((await answer('delete', '/jobs/{id}', `/jobs/${jobId}`)).status).toBe(204);
    expect((await answer('delete', '/jobs/{id}', `/jobs/${jobId}`)).status).toBe(404);
    expect((await answer('post', '/jobs/{id}/cancel', `/jobs/${uniqueId('job')}/cancel`)).status).toBe(404);
  });

  it('answers 431 to oversized headers, without a body, as documented', async () => {
    expect((await answer('get', '/status', '/status', { headers: { 'x-big': 'x'.repeat(20_000) } })).status).toBe(431);
  });

  it('has sent a request to every operation of the document', () => {
    const operations = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`));
    const reached = new Set([...seen].map((entry) => entry.split(' ').slice(0, 2).join(' ')));
    expect(operations.filter((operation) => !reached.has(operation))).toEqual([]);
  });
});

describe('the OpenAPI document with API tokens', () => {
  let gw: Harness;
  const tokens = { reader: 'reader-secret-token-0001', limited: 'limited-secret-token-002' };

  beforeAll(async () => {
    gw = await startGateway({
      storage: storageSection('filesystem'),
      auth: {
        tokens: [
          { name: 'reader', token: tokens.reader, scopes: ['read'] },
          { name: 'limited', token: tokens.limited, scopes: ['read', 'submit'], rate_limit: 1 },
        ],
      },
    });
  });
  afterAll(async () => gw.close());

  it('declares the 401, 403 and 429 that tokens bring, with their body', async () => {
    const doc = (await (await fetch(`${gw.url}/docs-json`, { headers: { authorization: `Bearer ${tokens.reader}` } })).json()) as Document;
    const ajv = new Ajv({ strict: false });
    const check = async (template: string, method: string, response: Response, status: number) => {
      expect(response.status).toBe(status);
      const schema = doc.paths[template]![method]!.responses[String(status)]!.content!['application/json']!.schema;
      const validate = ajv.compile({ ...schema, components: doc.components });
      const body: unknown = await response.json();
      expect({ body, errors: validate(body) ? null : validate.errors }).toEqual({ body, errors: null });
    };
    await check('/status', 'get', await fetch(`${gw.url}/status`), 401);
    await check('/start-job', 'post', await postJson(`${gw.url}/start-job`, {}).then((r) => r), 401);
    const asReader = { headers: { authorization: `Bearer ${tokens.reader}`, 'content-type': 'application/json' } };
    await check('/start-job', 'post', await fetch(`${gw.url}/start-job`, { ...asReader, method: 'POST', body: '{}' }), 403);
    await check('/metrics', 'get', await fetch(`${gw.url}/metrics`, asReader), 403);
    const asLimited = { headers: { authorization: `Bearer ${tokens.limited}` } };
    const answers = await Promise.all([1, 2, 3].map(() => fetch(`${gw.url}/status`, asLimited)));
    const limited = answers.find((response) => response.status === 429)!;
    await check('/status', 'get', limited, 429);
    expect((await fetch(`${gw.url}/health`)).status).toBe(200);
  });
});

describe('toOpenApi30', () => {
  it('turns JSON Schema nulls, consts and exclusive bounds into their 3.0 form', () => {
    expect(
      toOpenApi30({
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        type: 'object',
        properties: {
          a: { type: ['string', 'null'] },
          b: { anyOf: [{ type: 'integer', exclusiveMinimum: 0 }, { type: 'null' }] },
          c: { const: 'x', examples: ['x'] },
          d: { type: 'array', items: { type: ['number', 'null'] } },
          e: { type: ['string', 'number'] },
        },
        additionalProperties: { type: ['boolean', 'null'] },
      }),
    ).toEqual({
      type: 'object',
      properties: {
        a: { type: 'string', nullable: true },
        b: { type: 'integer', minimum: 0, exclusiveMinimum: true, nullable: true },
        c: { enum: ['x'], example: 'x' },
        d: { type: 'array', items: { type: 'number', nullable: true } },
        e: { anyOf: [{ type: 'string' }, { type: 'number' }] },
      },
      additionalProperties: { type: 'boolean', nullable: true },
    });
  });

  it('refuses what 3.0 cannot say instead of leaving a dangling $ref', () => {
    expect(() => toOpenApi30({ $defs: { a: { type: 'string' } }, $ref: '#/$defs/a' })).toThrow(/\$defs/);
  });
});
