"""Runner side of the Shepherd runner protocol, on pyzmq (Python 3.11 stdlib + pyzmq).

Same wire format as the original Shepherd (shepherd/comm/messages.py): a ROUTER
bound on tcp://0.0.0.0:PORT; each message one frame of JSON,
``{"message": {...}}``. Same semantics as ``serveRunner`` in @shepherd/runner:
``load()`` before binding, one job at a time in arrival order, a malformed
message is logged and not answered, SIGTERM/SIGINT finish the job in hand.
``report_progress`` sends our ProgressMessage, only to a sheep that announced it
takes one (its routing id starts with ``PROGRESS_PEER_PREFIX``): the original
sheep's listener dies on a message type it does not know.
"""

import argparse
import importlib
import json
import logging
import math
import os
import signal
import socket
import sys
import traceback

import zmq

__all__ = ["BaseRunner", "serve", "main", "encode_message", "decode_input", "PROGRESS_PEER_PREFIX"]

INPUT_DIR = "inputs"
OUTPUT_DIR = "outputs"
DEFAULT_PORT = 9999
# How long replies still queued may take to leave when the runner stops.
CLOSE_LINGER_MS = 2000
# Routing id prefix of a sheep that takes ProgressMessages (as PROGRESS_PEER_PREFIX in @shepherd/runner).
PROGRESS_PEER_PREFIX = b"shepherd-progress/1/"
# Longest progress message, in UTF-16 code units as the sheep counts them.
PROGRESS_MESSAGE_MAX = 1000

log = logging.getLogger("shepherd_runner")


class BaseRunner:
    """Subclass it and implement ``process_job``; a raised exception becomes the job's ErrorMessage."""

    def __init__(self, config, config_path):
        self.config = config
        self.config_path = config_path

    def load(self):
        """Load the model. Called before the socket is bound, so a sheep sees the runner only once it is ready."""

    def process_job(self, input_dir, output_dir, job_id):
        raise NotImplementedError

    def report_progress(self, fraction, message=None):
        """Report how far the job in hand is: ``fraction`` 0..1 (clamped), ``message`` cut to 1,000 characters.

        Sent at once, ahead of the job's answer. Does nothing outside ``process_job`` or for a sheep
        that does not take progress (the original's). Call it from the thread running ``process_job``
        (ZeroMQ sockets are not thread-safe), at most a few times a second: the sheep keeps the latest.
        """
        sink = getattr(self, "_progress_sink", None)
        if sink is not None:
            sink(fraction, message)


class MalformedMessage(ValueError):
    pass


def encode_message(message_type, job_id, **fields):
    """One frame, as the original writes it: identity, job_id and message_type first, then the type's own fields."""
    message = {"identity": "", "job_id": job_id, "message_type": message_type}
    message.update(fields)
    return json.dumps({"message": message}).encode()


def decode_input(frame):
    """Return (job_id, io_data_root) of an InputMessage frame; raise MalformedMessage otherwise."""
    try:
        wrapper = json.loads(frame.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedMessage("not JSON ({})".format(error)) from None
    message = wrapper.get("message") if isinstance(wrapper, dict) else None
    if not isinstance(message, dict):
        raise MalformedMessage('expected {"message": {...}}')
    if message.get("message_type") != "InputMessage":
        raise MalformedMessage("expected an InputMessage, got {!r}".format(message.get("message_type")))
    job_id, io_data_root = message.get("job_id"), message.get("io_data_root")
    if not isinstance(job_id, str) or not isinstance(io_data_root, str):
        raise MalformedMessage("job_id and io_data_root must be strings")
    return job_id, io_data_root


def serve(runner, port, host="0.0.0.0"):
    """Load the runner, bind and answer InputMessages until SIGTERM or SIGINT."""
    state = {"stopping": False, "busy": False}

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        if state["stopping"]:
            log.info("%s: already stopping, the job in hand still finishes", name)
        else:
            log.info("%s: stopping%s", name, " after the job in hand" if state["busy"] else "")
        state["stopping"] = True

    # The handlers only set a flag; the wakeup fd wakes the poll below (no periodic polling).
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    old_wakeup_fd = signal.set_wakeup_fd(wake_w.fileno())
    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    context = zmq.Context.instance()
    sock = None
    try:
        log.info("loading")
        runner.load()
        if state["stopping"]:
            return
        sock = context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, CLOSE_LINGER_MS)
        address = "tcp://{}:{}".format(host, port)
        sock.bind(address)
        log.info("listening on %s", address)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake_r.fileno(), zmq.POLLIN)
        while not state["stopping"]:
            ready = dict(poller.poll())
            if wake_r.fileno() in ready:
                _drain(wake_r)
            if state["stopping"] or sock not in ready:
                continue
            frames = sock.recv_multipart()
            state["busy"] = True
            try:
                _handle(runner, sock, frames)
            finally:
                state["busy"] = False
    finally:
        if sock is not None:
            sock.close(linger=CLOSE_LINGER_MS)
        for s, handler in old_handlers.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(old_wakeup_fd)
        wake_r.close()
        wake_w.close()
    log.info("stopped")


def _drain(sock):
    try:
        while sock.recv(64):
            pass
    except BlockingIOError:
        pass


def _handle(runner, sock, frames):
    if len(frames) != 2:
        log.error("ignored a message of %d frames (expected identity and one JSON frame)", len(frames))
        return
    identity, frame = frames
    try:
        job_id, io_data_root = decode_input(frame)
    except MalformedMessage as error:
        log.error("ignored a malformed message: %s: %r", error, frame[:200])
        return
    job_dir = os.path.join(io_data_root, job_id)
    log.info("job %s: started", job_id)
    takes_progress = identity.startswith(PROGRESS_PEER_PREFIX)

    def send_progress(fraction, message):
        try:
            value = float(fraction)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            log.warning("job %s: progress %r ignored: not a finite number", job_id, fraction)
            return
        if not takes_progress:
            return
        fields = {"progress": min(1.0, max(0.0, value))}
        if message is not None and str(message) != "":
            fields["message"] = _cut(str(message), PROGRESS_MESSAGE_MAX)
        sock.send_multipart([identity, encode_message("ProgressMessage", job_id, **fields)])

    runner._progress_sink = send_progress
    try:
        runner.process_job(os.path.join(job_dir, INPUT_DIR), os.path.join(job_dir, OUTPUT_DIR), job_id)
        reply = encode_message("DoneMessage", job_id)
        log.info("job %s: done", job_id)
    except Exception as error:
        trace = traceback.format_exc()
        type_name = type(error).__name__
        reply = encode_message(
            "ErrorMessage",
            job_id,
            message="{}: {}".format(type_name, error),
            exception_type=type_name,
            exception_traceback=trace,
        )
        log.error("job %s: failed:\n%s", job_id, trace)
    finally:
        runner._progress_sink = None
    # A ROUTER drops a reply to a sheep that went away; it never blocks.
    sock.send_multipart([identity, reply])


def _cut(text, limit):
    """At most ``limit`` UTF-16 code units (characters past U+FFFF count two), as JavaScript counts."""
    text = text[:limit]
    while len(text.encode("utf-16-le")) > 2 * limit:
        text = text[:-1]
    return text


def _load_config(path):
    """YAML when PyYAML is there; otherwise JSON, or top-level `key: value` lines."""
    with open(path, encoding="utf-8") as file:
        source = file.read()
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        return yaml.safe_load(source) or {}
    try:
        return json.loads(source)
    except ValueError:
        config = {}
        for line in source.splitlines():
            if line.strip() and not line[0].isspace() and not line.startswith("#") and ":" in line:
                key, _, value = line.partition(":")
                if value.strip():
                    config[key.strip()] = value.split(" #")[0].strip().strip("'\"")
        return config


def _load_class(spec):
    module_name, sep, class_name = spec.partition(":")
    if not sep:
        module_name, _, class_name = spec.rpartition(".")
    if not module_name or not class_name:
        raise ValueError("expected module:Class, got {!r}".format(spec))
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def main(argv=None):
    """``python3 -m shepherd_runner [-p PORT] [-s STREAM] [-r module:Class] CONFIG_PATH``; returns the exit code."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[shepherd-runner] %(message)s")
    parser = argparse.ArgumentParser(prog="shepherd_runner")
    parser.add_argument("-p", "--port", type=int, default=DEFAULT_PORT, help="port to bind (default 9999)")
    parser.add_argument("-s", "--stream", help="accepted and ignored (the original's emloop stream name)")
    parser.add_argument("-r", "--runner", help="runner class as module:Class (default: the config's runner key)")
    parser.add_argument("config_path")
    args = parser.parse_args(argv)

    config_path = os.path.abspath(args.config_path)
    try:
        config = _load_config(config_path)
    except (OSError, ValueError) as error:
        parser.exit(2, "shepherd_runner: cannot read config file {} ({})\n".format(config_path, error))

    spec = args.runner or (config.get("runner") if isinstance(config, dict) else None)
    if not isinstance(spec, str) or not spec:
        parser.exit(2, "shepherd_runner: no runner: give -r module:Class or a runner key in {}\n".format(config_path))
    # As the original: runner modules are found from the working directory; also beside the config.
    sys.path[:0] = [os.getcwd(), os.path.dirname(config_path)]
    try:
        runner_class = _load_class(spec)
    except (ImportError, AttributeError, ValueError) as error:
        parser.exit(2, "shepherd_runner: cannot load runner {!r}: {}\n".format(spec, error))

    serve(runner_class(config, config_path), args.port)
    return 0
