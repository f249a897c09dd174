// Preloaded into the processes under test (NODE_OPTIONS=--require <this file>)
// so their event-loop delay can be read without touching their code. With
// BENCH_LOOP_DIR set, each process writes <dir>/<pid>.json; the bench writes
// <dir>/control ("reset:<n>" or "report:<n>") and waits for files with seq n.
// Runs no code at all without BENCH_LOOP_DIR.
'use strict';
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { watchControl, writeAnswer } = require('./probe-control.cjs');

const dir = process.env.BENCH_LOOP_DIR;
if (dir) {
  // 10 ms: Node's default; a finer one wakes the process more and costs CPU.
  const RESOLUTION_MS = 10;
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  let seq = 0;
  // Node records the whole timer interval (resolution included): the delay is what exceeds it.
  const ms = (ns) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  const write = () => {
    const empty = histogram.count === 0;
    const body = JSON.stringify({
      seq,
      pid: process.pid,
      at: Date.now(),
      count: histogram.count,
      p50: empty ? 0 : ms(histogram.percentile(50)),
      p99: empty ? 0 : ms(histogram.percentile(99)),
      max: empty ? 0 : ms(histogram.max),
      mean: empty ? 0 : ms(histogram.mean),
    });
    writeAnswer(dir, body);
  };
  watchControl(dir, ([command, n]) => {
    if (command === 'reset') histogram.reset();
    seq = Number(n);
    write();
  });
  process.on('exit', write);
}
