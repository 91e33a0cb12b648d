"""What the python-socketio test scripts share (imported from their
folder, which python puts first on the path): printing a step for the Go
test that reads it, failing, and an AsyncClient whose events go into
queues and lists."""
import asyncio
import sys

import socketio

WAIT = 30


def say(msg):
    print(msg, flush=True)


def fail(msg):
    say("FAIL: " + msg)
    sys.exit(1)


class Client:
    """An AsyncClient (reconnection on: the default, as Framework0 uses
    it) whose snapshots, updates and error events are queued, and whose
    connect_error events are listed.

    Its first reconnection waits a tenth of Framework0's (python-socketio's
    default of 1 s, randomized 0.5 to 1.5 s): the tests wait for it and
    time nothing. A reconnection the client should not attempt shows
    sooner, not later."""

    def __init__(self):
        self.sio = socketio.AsyncClient(reconnection_delay=0.1, randomization_factor=0.05)
        self.snapshots = asyncio.Queue()
        self.updates = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.connect_errors = []
        self.sio.on("context_snapshot", self.snapshots.put)
        self.sio.on("context_updated", self.updates.put)
        self.sio.on("error", self.errors.put)
        self.sio.on("connect_error", self.connect_errors.append)

    def error_codes(self):
        """The codes of the error events queued so far (they are taken)."""
        codes = []
        while not self.errors.empty():
            codes.append(self.errors.get_nowait().get("code"))
        return codes
