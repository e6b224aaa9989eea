"""Broadcasts: fan-out on read for in-app-only sends to very large audiences.

A campaign (or an API run to a topic or saved audience) whose only channel is
the inbox and whose audience holds more than ``HERALD_BROADCAST_THRESHOLD``
recipients is not cut into batches: launch writes ONE ``broadcasts`` row (the
audience filter, snapshotted) and publishes ONE event on the broadcast
channel (:mod:`app.broadcasts.launch`). Inboxes merge the broadcasts that
target their reader when they are read (:mod:`app.broadcasts.reading`): the
audience filter is compiled by :mod:`app.audiences.filters` and evaluated in
SQL for that one recipient, and the reader's in-app preferences and hard stop
go through :func:`app.delivery.routing.route`, all at read time.

A reader's copy becomes a real notification row (origin ``campaign:<id>``,
unique per campaign and recipient, id derived from broadcast and recipient)
when they read, open or archive it. Until then nothing is stored per reader.
"""
