"""Mobile push: every active iOS and Android device of the recipient, through APNs or FCM by platform.

How the devices' outcomes make up the delivery's is decided in
:func:`app.delivery.fanout.combine` (any device reached = delivered; dead
tokens are deactivated either way).
"""

from __future__ import annotations

from app.channels.apns import MAX_PAYLOAD_BYTES, ApnsClient
from app.channels.base import Channel, Message, Outcome, Result, register
from app.channels.fcm import FcmClient
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
    # The APNs and FCM clients are pooled httpx clients with their token refresh under a lock: safe to share,
    # so a batch keeps this many provider round trips in flight instead of paying them one after another.
    concurrent_sends = 8

    def __init__(self, app_config: dict):
        super().__init__(app_config)
        self.clients = {platform: provider(app_config) for platform, provider in PROVIDERS.items()}

    def send(self, message: Message) -> Result:
        results = []
        for device in message.devices:
            client = self.clients.get(device.platform)
            if client is None:
                result = Result(Outcome.PERMANENT, "push", error_code="unsupported_platform", detail=device.platform)
            else:
                result = client.send(device, message)
            results.append((device.id, result))
        return combine("push", results)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
