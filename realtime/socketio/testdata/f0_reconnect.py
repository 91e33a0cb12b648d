#!/usr/bin/env python3
"""Framework0's async client comes back by itself when the server ends its
session: python-socketio's AsyncClient with reconnection on (its default,
as Framework0 uses it). Run by TestPythonReconnects (python_test.go) with
the server's URL, the transports ("default", "websocket", "polling") and
what the test does to the session ("restart" or "lagged").

It prints READY once connected with its snapshot, and the test then ends
the session; it prints BACK once it has reconnected by itself and got a
new snapshot, and the test then writes the key "after"; it prints OK
once that change came, and exits 0. python-socketio reconnects only when
the transport drops: a Socket.IO DISCONNECT or an Engine.IO close packet
from the server tells it not to come back.
"""
import asyncio
import sys

from f0_common import WAIT, Client, fail, say

URL = sys.argv[1]
TRANSPORTS = None if sys.argv[2] == "default" else sys.argv[2].split(",")


async def main():
    c = Client()
    sio, snapshots, updates = c.sio, c.snapshots, c.updates

    await sio.connect(URL, transports=TRANSPORTS, wait_timeout=10)
    await asyncio.wait_for(snapshots.get(), 10)
    say("READY")
    try:
        snap = await asyncio.wait_for(snapshots.get(), WAIT)
    except asyncio.TimeoutError:
        fail("no new context_snapshot within %ds: the client did not reconnect (errors: %r)" % (WAIT, c.error_codes()))
    say("BACK " + str(snap.get("rev")))
    while True:
        try:
            upd = await asyncio.wait_for(updates.get(), 10)
        except asyncio.TimeoutError:
            fail("no context_updated for the key after")
        if upd.get("key") == "after":
            break
    await sio.disconnect()
    say("OK errors=%r" % c.error_codes())


asyncio.run(main())
