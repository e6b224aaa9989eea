"""Channel adapters, one module per provider, registered by name on import.

Import the registry's functions from here (not from ``base``): importing this
package is what registers every adapter.
"""
from app.channels import email, in_app, push, twilio_sms, web_push  # noqa: F401
from app.channels.base import (Channel, DeviceTarget, Message, Outcome, Result, adapter_for, address_fields,
                               canonical_address, channel_class, channel_classes, channel_names, close_all,
                               content_fields, device_platforms, external_channels, field_limits, in_list_order,
                               in_send_order, interrupting_channels, is_external, label_for, labels,
                               needs_marketing_opt_in, offers_one_click_unsubscribe, optional_fields, preference_channels, reachable, register,
                               template_label, variant_channels, variant_sources)

# What the in-app adapter is, until app/channels/in_app.py (rewritten with the one delivery pipeline)
# declares it on its own class like every other adapter: then these lines move there.
in_app.InAppChannel.label = "In-app"
in_app.InAppChannel.order, in_app.InAppChannel.send_order, in_app.InAppChannel.preference_column = 0, 0, 0
in_app.InAppChannel.content_fields = ("title", "body")
in_app.InAppChannel.field_limits = {"title": 500, "body": 10_000}

__all__ = ["Channel", "DeviceTarget", "Message", "Outcome", "Result", "adapter_for", "address_fields",
           "canonical_address", "channel_class", "channel_classes", "channel_names", "close_all", "content_fields",
           "device_platforms", "external_channels", "field_limits", "in_list_order", "in_send_order",
           "interrupting_channels", "is_external", "label_for", "labels", "needs_marketing_opt_in",
           "offers_one_click_unsubscribe", "optional_fields", "preference_channels", "reachable", "register", "template_label", "variant_channels",
           "variant_sources"]
