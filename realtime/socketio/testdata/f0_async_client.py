#!/usr/bin/env python3
"""Framework0's async client, as Framework0 uses it, against ctxd.

python-socketio's AsyncClient with its default transports (polling, then
the upgrade to websocket): connect, context_snapshot, context_updated after a
REST write, a burst of 100 changes in one transaction (each once, in order:
over polling, more than python-engineio's 16 packets per poll answer),
context_set with its confirmation, client_register. Run by
TestPythonAsyncClient (socketio_test.go) with the server's URL; exits 0 and
prints OK when every step passed.
"""
import asyncio
import json
import sys
import urllib.request

import socketio

URL = sys.argv[1]
# The transports to use: "default" (polling, then the upgrade) or a
# comma-separated list ("websocket", "polling").
TRANSPORTS = None if len(sys.argv) < 3 or sys.argv[2] == "default" else sys.argv[2].split(",")
BURST = 100
EVENTS = ["context_snapshot", "context_updated", "context_set_confirmed",
          "registration_confirmed", "client_stats", "error"]


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


async def main():
    sio = socketio.AsyncClient(reconnection=False)
    queue = asyncio.Queue()

    def handler(name):
        async def on(data):
            await queue.put((name, data))
        return on

    for name in EVENTS:
        sio.on(name, handler(name))

    async def expect(name):
        while True:
            got, data = await asyncio.wait_for(queue.get(), 10)
            if got == name:
                return data
            if got != "client_stats":
                fail("want %s, got %s %r" % (name, got, data))

    await sio.connect(URL, transports=TRANSPORTS, wait_timeout=10)
    snap = await expect("context_snapshot")
    if snap.get("context", {}).get("seed") != {"n": 1}:
        fail("context_snapshot: %r" % snap)
    for field in ("timestamp", "client_id"):
        if field not in snap:
            fail("context_snapshot has no %s: %r" % (field, snap))
    want = "polling" if TRANSPORTS == ["polling"] else "websocket"
    if sio.transport() != want:
        fail("the client's transport is %s, not %s" % (sio.transport(), want))

    async def rest(method, path, body):
        """Sends a REST request from a thread (urllib blocks) and fails unless it answers 200."""
        def send():
            req = urllib.request.Request(URL + path, data=body, method=method,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        status = await asyncio.get_running_loop().run_in_executor(None, send)
        if status != 200:
            fail("REST %s %s: %s" % (method, path, status))

    await rest("PUT", "/v1/ns/default/keys/from_rest?who=rest", b'"hello"')
    upd = await expect("context_updated")
    if (upd.get("key"), upd.get("value"), upd.get("who")) != ("from_rest", "hello", "rest") or "timestamp" not in upd:
        fail("context_updated: %r" % upd)

    ops = [{"op": "put", "key": "burst/%03d" % i, "value": i} for i in range(BURST)]
    await rest("POST", "/v1/txn", json.dumps({"ops": ops}).encode())
    for i in range(BURST):
        upd = await expect("context_updated")
        if upd.get("key") != "burst/%03d" % i:
            fail("change %d of the burst: %r" % (i, upd))

    await sio.emit("client_register", {"type": "python", "name": "f0-async"})
    reg = await expect("registration_confirmed")
    if reg.get("status") != "success" or reg.get("name") != "f0-async" or not reg.get("client_id"):
        fail("registration_confirmed: %r" % reg)

    await sio.emit("context_set", {"key": "py", "value": {"a": 1}, "who": "python"})
    conf = await expect("context_set_confirmed")
    if (conf.get("key"), conf.get("value"), conf.get("status")) != ("py", {"a": 1}, "success"):
        fail("context_set_confirmed: %r" % conf)

    await sio.disconnect()
    print("OK", json.dumps({"transports": TRANSPORTS or "default", "rev": conf.get("rev")}), flush=True)


asyncio.run(main())
