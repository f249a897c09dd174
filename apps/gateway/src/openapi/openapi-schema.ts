import { z } from 'zod';

/** An OpenAPI 3.0 Schema Object, as plain JSON. */
export type OpenApiSchema = Record<string, unknown>;

/**
 * A zod schema as an OpenAPI 3.0 schema. zod's own `openapi-3.0` target does
 * most of it; `toOpenApi30` then removes what 3.0 still does not allow, so the
 * document stays valid whatever zod emits. `input` for request bodies
 * (defaults make fields optional), `output` for answers.
 */
export function zodToOpenApi(schema: z.ZodType, io: 'input' | 'output'): OpenApiSchema {
  return toOpenApi30(z.toJSONSchema(schema, { target: 'openapi-3.0', io, unrepresentable: 'throw' }) as OpenApiSchema);
}

const DROPPED = new Set(['$schema', '$id', '$comment', 'id']);
const SUBSCHEMA_LISTS = ['allOf', 'anyOf', 'oneOf'];
const SUBSCHEMA = ['items', 'not', 'additionalProperties'];
const SUBSCHEMA_MAPS = ['properties', 'patternProperties'];

/**
 * JSON Schema (draft 2020-12 or 7, as zod writes it) to an OpenAPI 3.0 schema:
 * `type: [x, "null"]` and `anyOf: [X, {type: "null"}]` become `nullable: true`,
 * `const` becomes a one-value `enum`, numeric `exclusiveMinimum`/`Maximum`
 * become 3.0's boolean form, `examples` the single `example`, and `$schema`
 * and the like are dropped. `$defs` cannot be kept in 3.0: a schema with them
 * is refused, so a reused zod schema is noticed instead of left dangling.
 */
export function toOpenApi30(schema: OpenApiSchema): OpenApiSchema {
  if ('$defs' in schema || 'definitions' in schema) throw new Error('$defs have no place in an OpenAPI 3.0 schema: inline the reused schema');
  if ('prefixItems' in schema) throw new Error('prefixItems (tuples) have no OpenAPI 3.0 form');
  const out: OpenApiSchema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (DROPPED.has(key)) continue;
    if (SUBSCHEMA_LISTS.includes(key) && Array.isArray(value)) out[key] = value.map((item) => toOpenApi30(item as OpenApiSchema));
    else if (SUBSCHEMA.includes(key) && isObject(value)) out[key] = toOpenApi30(value);
    else if (SUBSCHEMA_MAPS.includes(key) && isObject(value)) {
      out[key] = Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, toOpenApi30(sub as OpenApiSchema)]));
    } else out[key] = value;
  }
  if ('const' in out) {
    out.enum = [out.const];
    delete out.const;
  }
  if (Array.isArray(out.examples)) {
    if (out.examples.length > 0 && !('example' in out)) out.example = out.examples[0];
    delete out.examples;
  }
  for (const [bound, exclusive] of [['minimum', 'exclusiveMinimum'], ['maximum', 'exclusiveMaximum']] as const) {
    if (typeof out[exclusive] === 'number') {
      out[bound] = out[exclusive];
      out[exclusive] = true;
    }
  }
  if (Array.isArray(out.type)) {
    const types = out.type.filter((type) => type !== 'null');
    if (types.length < out.type.length) out.nullable = true;
    if (types.length === 1) out.type = types[0];
    else {
      delete out.type;
      out.anyOf = types.map((type) => ({ type }));
    }
  }
  return mergeNullBranch(out);
}

/** `anyOf: [X, {type: "null"}]` (zod's `.nullable()` on a complex schema) → X with `nullable: true`. */
function mergeNullBranch(schema: OpenApiSchema): OpenApiSchema {
  for (const list of ['anyOf', 'oneOf'] as const) {
    const branches = schema[list];
    if (!Array.isArray(branches)) continue;
    const rest = (branches as OpenApiSchema[]).filter((branch) => !(branch.type === 'null' && Object.keys(branch).length === 1));
    if (rest.length === branches.length) continue;
    const { [list]: _dropped, ...others } = schema;
    void _dropped;
    if (rest.length === 1 && typeof rest[0]!.type === 'string') return { ...rest[0], ...others, nullable: true };
    // 3.0 allows `nullable` only beside `type`: several branches keep their list, each made nullable.
    return { ...others, [list]: rest.map((branch) => (typeof branch.type === 'string' ? { ...branch, nullable: true } : branch)) };
  }
  return schema;
}

function isObject(value: unknown): value is OpenApiSchema {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
