#!/usr/bin/env python3
"""Framework0's async client when a reload of the tokens file revokes its
token: python-socketio's AsyncClient with reconnection on (its default).
Run by TestPythonRevokedToken (python_test.go) with the server's URL, the
transports ("default", "websocket", "polling"), the token's secret and
what the reload does to it: "changed" (its rights grow: the client must
come back by itself with them), "removed" or "cut" (no longer allowed the
client's namespace): the client must end, and not retry a reconnection
the server refuses.

It connects to namespace x, prints READY and the keys of its snapshot;
the test then reloads the tokens file.
changed: it prints BACK and the keys of the new snapshot once it has
reconnected by itself, the test writes b/after, and it prints OK once
that change came.
removed, cut: it prints ENDED once the client has stopped (sio.wait()
returned: no reconnection under way), with no connect_error on the way.
"""
import asyncio
import os
import sys

from f0_common import WAIT, Client, fail, say

URL, TRANSPORTS, TOKEN, CASE = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
TRANSPORTS = None if TRANSPORTS == "default" else TRANSPORTS.split(",")


async def main():
    c = Client()
    sio, snapshots, updates, errors, connect_errors = c.sio, c.snapshots, c.updates, c.errors, c.connect_errors

    await sio.connect(URL, transports=TRANSPORTS, auth={"ns": "x", "token": TOKEN}, wait_timeout=10)
    snap = await asyncio.wait_for(snapshots.get(), 10)
    say("READY " + ",".join(sorted(snap["context"])))
    try:
        err = await asyncio.wait_for(errors.get(), WAIT)
    except asyncio.TimeoutError:
        fail("no error event within %ds" % WAIT)
    if err.get("code") != "token_revoked":
        fail("error %r, want token_revoked" % err)

    if CASE == "changed":
        try:
            snap = await asyncio.wait_for(snapshots.get(), WAIT)
        except asyncio.TimeoutError:
            fail("no new context_snapshot within %ds: the client did not reconnect (connected=%r, connect_errors=%r)"
                 % (WAIT, sio.connected, connect_errors))
        say("BACK " + ",".join(sorted(snap["context"])))
        while True:
            try:
                upd = await asyncio.wait_for(updates.get(), 10)
            except asyncio.TimeoutError:
                fail("no context_updated for the key b/after")
            if upd.get("key") == "b/after":
                break
        await sio.disconnect()
        say("OK")
        return

    # Not wait_for: cancelling sio.wait() cancels its reconnection task,
    # which python-socketio 5.7 swallows (it goes on retrying), and
    # wait_for would wait for it.
    waiter = asyncio.ensure_future(sio.wait())
    done, _ = await asyncio.wait({waiter}, timeout=WAIT)
    if not done:
        say("FAIL: still reconnecting after %ds (connect_errors: %r)" % (WAIT, connect_errors))
        os._exit(1)  # the reconnection task does not stop when cancelled
    if sio.connected or not snapshots.empty() or connect_errors:
        fail("connected=%r, new snapshot=%r, connect_errors=%r: it came back, or tried to"
             % (sio.connected, not snapshots.empty(), connect_errors))
    say("ENDED")


asyncio.run(main())
