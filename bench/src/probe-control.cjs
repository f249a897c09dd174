// The file protocol of the bench's preloaded probes (loop-probe.cjs,
// heap-probe.cjs): the bench writes <dir>/control ("<command>:<n>[:...]"),
// each probed process sees each new text once (polled every 100 ms, never
// keeping the process alive) and answers in <dir>/<pid>.json with seq n.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

/** Calls `onCommand(parts)` with the control text split on ':' each time it changes. */
function watchControl(dir, onCommand) {
  const control = path.join(dir, 'control');
  let last = '';
  const tick = () => {
    let text = '';
    try {
      text = fs.readFileSync(control, 'utf8');
    } catch {
      return;
    }
    if (text === last) return;
    last = text;
    onCommand(text.split(':'));
  };
  setInterval(tick, 100).unref();
}

/** Writes this process's answer whole (temp file, then rename); a folder the bench removed is ignored. */
function writeAnswer(dir, body) {
  const out = path.join(dir, `${process.pid}.json`);
  try {
    fs.writeFileSync(`${out}.tmp`, body);
    fs.renameSync(`${out}.tmp`, out);
  } catch {
    // nothing left to report to
  }
}

module.exports = { watchControl, writeAnswer };
