"""Echo runner in Python: the same semantics as the TypeScript example.

Writes ``outputs/output`` = ``{"result": <input>, "model": <config model or None>, "pid": <pid>}``.
An input object may ask for ``sleep_ms`` (wait first), ``progress_steps`` (with
``sleep_ms``: wait in that many equal steps, calling ``report_progress(i / N, "step i/N")``
after each), ``exit`` (the process dies
with that code), ``fail`` (the job raises that message) and ``files``
({relative path: text} written into outputs/).
"""

import json
import os
import time

from shepherd_runner import BaseRunner


class EchoRunner(BaseRunner):
    def process_job(self, input_dir, output_dir, job_id):
        with open(os.path.join(input_dir, "input"), encoding="utf-8") as file:
            data = json.load(file)
        asks = data if isinstance(data, dict) else {}

        sleep_s = asks["sleep_ms"] / 1000 if isinstance(asks.get("sleep_ms"), (int, float)) else 0
        steps = asks.get("progress_steps")
        if isinstance(steps, int) and steps >= 1:
            for step in range(1, steps + 1):
                time.sleep(sleep_s / steps)
                self.report_progress(step / steps, "step {}/{}".format(step, steps))
        elif sleep_s:
            time.sleep(sleep_s)
        if isinstance(asks.get("exit"), int):
            os._exit(asks["exit"])  # dies at once, like a crashed runner
        if "fail" in asks:
            raise ValueError(str(asks["fail"]))

        os.makedirs(output_dir, exist_ok=True)
        for name, content in (asks.get("files") or {}).items():
            path = os.path.realpath(os.path.join(output_dir, name))
            if not path.startswith(os.path.realpath(output_dir) + os.sep):
                raise ValueError("files: {} is outside outputs/".format(name))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as file:
                file.write(str(content))

        model = self.config.get("model") if isinstance(self.config, dict) else None
        with open(os.path.join(output_dir, "output"), "w", encoding="utf-8") as file:
            json.dump({"result": data, "model": model, "pid": os.getpid()}, file)
