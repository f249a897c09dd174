// Preloaded into the gateway by heap-backlog.ts (NODE_OPTIONS=--require
// <this file>) so its memory can be read from inside without touching its
// code. With HEAP_PROBE_DIR set, the script writes <dir>/control
// ("<command>:<n>") and waits for <dir>/<pid>.json with seq n. Commands:
// `mem` reads process.memoryUsage() as it is, `gc` collects first (twice:
// weak references and finalizers need a second pass), `snap:<n>:<name>`
// writes <dir>/<name>.heapsnapshot (V8 collects before it snapshots),
// `alloc` starts the sampling heap profiler over every allocation (those
// collected since included), `allocstop:<n>:<name>` writes what it saw to
// <dir>/<name>.heapprofile.
// Runs no code at all without HEAP_PROBE_DIR.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { watchControl, writeAnswer } = require('./probe-control.cjs');
const v8 = require('node:v8');
const vm = require('node:vm');

const dir = process.env.HEAP_PROBE_DIR;
if (dir) {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  let session;
  const post = (method, params) =>
    new Promise((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))));
  const report = (seq, extra) => {
    const body = JSON.stringify({ seq, pid: process.pid, memory: process.memoryUsage(), spaces: v8.getHeapSpaceStatistics(), ...extra });
    writeAnswer(dir, body);
  };
  watchControl(dir, ([command, n, name]) => {
    const seq = Number(n);
    if (command === 'gc') {
      gc();
      gc();
    }
    if (command === 'snap') {
      const file = path.join(dir, `${name}.heapsnapshot`);
      v8.writeHeapSnapshot(file);
      report(seq, { snapshot: file });
      return;
    }
    if (command === 'alloc') {
      session = new (require('node:inspector').Session)();
      session.connect();
      const params = { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true };
      post('HeapProfiler.startSampling', params).then(() => report(seq, {}));
      return;
    }
    if (command === 'allocstop') {
      const file = path.join(dir, `${name}.heapprofile`);
      post('HeapProfiler.stopSampling', {}).then(({ profile }) => {
        fs.writeFileSync(file, JSON.stringify(profile));
        session.disconnect();
        report(seq, { profile: file });
      });
      return;
    }
    report(seq, {});
  });
}
