"""Channel adapters, one module per provider, registered by name on import.

Import the registry's functions from here (not from ``base``): importing this
package is what registers every adapter.
"""
from app.channels import email, in_app, push, twilio_sms, web_push  # noqa: F401
from app.channels.base import (
                               Channel,
                               DeviceTarget,
                               Message,
                               Outcome,
                               Result,
                               adapter_for,
                               address_fields,
                               canonical_address,
                               channel_class,
                               channel_classes,
                               channel_names,
                               close_all,
                               content_fields,
                               device_platforms,
                               external_channels,
                               field_limits,
                               in_list_order,
                               in_send_order,
                               inbox_channel,
                               interrupting_channels,
                               is_external,
                               label_for,
                               labels,
                               needs_marketing_opt_in,
                               offers_one_click_unsubscribe,
                               optional_fields,
                               preference_channels,
                               reachable,
                               register,
                               send_rank,
                               template_label,
                               variant_channels,
                               variant_sources,
)

__all__ = ["Channel", "DeviceTarget", "Message", "Outcome", "Result", "adapter_for", "address_fields",
           "canonical_address", "channel_class", "channel_classes", "channel_names", "close_all", "content_fields",
           "device_platforms", "external_channels", "field_limits", "inbox_channel", "in_list_order", "in_send_order",
           "interrupting_channels", "is_external", "label_for", "labels", "needs_marketing_opt_in",
           "offers_one_click_unsubscribe", "optional_fields", "preference_channels", "reachable", "register", "send_rank", "template_label", "variant_channels",
           "variant_sources"]
