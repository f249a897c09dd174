#!/usr/bin/env node
// Renders every overlay of deploy/kubernetes with `kubectl kustomize` (no
// cluster needed) and validates each object against the Kubernetes schemas
// (kubernetes-models) and KEDA's (@kubernetes-models/keda): types, required
// fields, enums, formats. The models' schemas allow unknown fields, so a
// misspelt optional key is not caught here (a cluster's `kubectl apply
// --validate=strict` would catch it). It also loads the
// shared Shepherd config through the real loader and checks that each
// pool's ScaledObject scales to no more pods than it has sheep ids.
// Exits 1 naming the overlay, the object and the field.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createRequire } from 'node:module';

const root = resolve(import.meta.dirname, '..');
const overlaysDir = join(root, 'deploy/kubernetes/overlays');
const require = createRequire(join(root, 'packages/config/package.json'));
// Through @shepherd/config: its loader, and the js-yaml it parses with.
const { loadConfig } = require('@shepherd/config');
const yaml = require('js-yaml');

/** apiVersion → the module of its models. */
const MODULES = {
  v1: 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'policy/v1': 'kubernetes-models/policy/v1',
  'keda.sh/v1alpha1': '@kubernetes-models/keda/keda.sh/v1alpha1',
};

const problems = [];

function render(overlay) {
  try {
    return execFileSync('kubectl', ['kustomize', join(overlaysDir, overlay)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    if (error.code === 'ENOENT') {
      console.error('check-kubernetes: `kubectl` is not installed (Debian: apt-get install -y kubectl); it renders the overlays.');
      process.exit(1);
    }
    problems.push(`${overlay}: kubectl kustomize failed:\n${error.stderr || error.message}`);
    return null;
  }
}

async function validate(overlay, object) {
  const name = `${overlay}: ${object.kind}/${object.metadata?.name}`;
  const module = MODULES[object.apiVersion];
  if (!module) return problems.push(`${name}: no schema for apiVersion ${object.apiVersion}`);
  const models = await import(module);
  const Model = models[object.kind];
  if (!Model) return problems.push(`${name}: no schema for kind ${object.kind} in ${object.apiVersion}`);
  try {
    new Model(object).validate();
  } catch (error) {
    return problems.push(`${name}: ${error.message}`);
  }
}

/** The Shepherd config of the ConfigMap loads; each pool scales to at most its sheep ids. */
function checkShepherdConfig(overlay, objects) {
  const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('shepherd-config'));
  if (!configMap) return problems.push(`${overlay}: no shepherd-config ConfigMap`);
  const dir = mkdtempSync(join(tmpdir(), 'shepherd-k8s-'));
  try {
    const file = join(dir, 'shepherd.yml');
    writeFileSync(file, configMap.data['shepherd.yml']);
    const dummy = { SHEPHERD_S3_ACCESS_KEY: 'x', SHEPHERD_S3_SECRET_KEY: 'x', SHEPHERD_REDIS_PASSWORD: 'x' };
    for (const name of ['ADMIN', 'SUBMIT', 'METRICS']) dummy[`SHEPHERD_${name}_TOKEN_SHA256`] = '0'.repeat(64);
    const config = loadConfig(file, { env: dummy });
    for (const scaled of objects.filter((o) => o.kind === 'ScaledObject')) {
      const target = objects.find((o) => o.kind === scaled.spec.scaleTargetRef.kind && o.metadata.name === scaled.spec.scaleTargetRef.name);
      if (!target) {
        problems.push(`${overlay}: ScaledObject/${scaled.metadata.name}: scales ${scaled.spec.scaleTargetRef.kind}/${scaled.spec.scaleTargetRef.name}, which is not there`);
        continue;
      }
      const sheepId = target.spec.template.spec.containers.flatMap((c) => c.env ?? []).find((e) => e.name === 'SHEEP_ID')?.value ?? '';
      const pool = sheepId.replace(/\$\(POD_INDEX\)$/, '');
      for (let index = 0; index < (scaled.spec.maxReplicaCount ?? 100); index++) {
        if (!config.sheep[`${pool}${index}`]) {
          problems.push(`${overlay}: ScaledObject/${scaled.metadata.name}: maxReplicaCount ${scaled.spec.maxReplicaCount} but shepherd.yml has no sheep ${pool}${index}`);
          break;
        }
      }
    }
  } catch (error) {
    problems.push(`${overlay}: shepherd.yml: ${error.message}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const overlays = readdirSync(overlaysDir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
let count = 0;
for (const overlay of overlays) {
  const text = render(overlay);
  if (text === null) continue;
  const objects = yaml.loadAll(text).filter(Boolean);
  for (const object of objects) {
    count += 1;
    await validate(overlay, object);
  }
  checkShepherdConfig(overlay, objects);
}
if (problems.length > 0) {
  console.error(`check-kubernetes: ${problems.length} problem(s):\n${problems.map((p) => `  ${p}`).join('\n')}`);
  process.exit(1);
}
console.log(`kubernetes manifests: ${overlays.length} overlays (${overlays.join(', ')}), ${count} objects valid`);
