"""Mobile push: every active iOS and Android device of the recipient, through APNs or FCM by platform.

How the devices' outcomes make up the delivery's is decided in
:func:`app.delivery.fanout.combine` (any device reached = delivered; dead
tokens are deactivated either way).
"""

from __future__ import annotations

import asyncio

from app.channels.apns import MAX_PAYLOAD_BYTES, ApnsClient
from app.channels.base import Channel, Message, Outcome, Result, register
from app.channels.fcm import FcmClient
from app.channels.guard_async import run_and_flush
from app.delivery.fanout import combine

# platform -> the provider client that reaches it
PROVIDERS = {"ios": ApnsClient, "android": FcmClient}


@register("push")
class MobilePush(Channel):
    label = "Mobile push"
    order, send_order, preference_column = 3, 1, 3
    platforms = frozenset(PROVIDERS)
    interrupts = True
    content_fields = ("title", "body")
    field_limits = {"title": 200, "body": 2000}
    payload_limit = MAX_PAYLOAD_BYTES  # APNs and FCM both cap the JSON body at 4 KB
    tracks_links = True
    # APNs and FCM are sent on the worker's HTTP loop (libcurl; APNs over HTTP/2): this many messages in
    # flight per worker, each provider client holding at most as many requests.
    asynchronous = True
    concurrent_sends = 16

    def __init__(self, app_config: dict):
        super().__init__(app_config)
        self.clients = {
            platform: provider(app_config, limit=self.concurrent_sends) for platform, provider in PROVIDERS.items()
        }

    def send(self, message: Message) -> Result:
        return run_and_flush(self.send_async(message))

    async def send_async(self, message: Message) -> Result:
        """Every device of the message at once; their outcomes make up the delivery's."""
        results = await asyncio.gather(*(self._send_to(device, message) for device in message.devices))
        return combine("push", [(device.id, result) for device, result in zip(message.devices, results, strict=True)])

    async def _send_to(self, device, message: Message) -> Result:
        client = self.clients.get(device.platform)
        if client is None:
            return Result(Outcome.PERMANENT, "push", error_code="unsupported_platform", detail=device.platform)
        return await client.send(device, message)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
