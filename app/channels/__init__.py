"""Channel adapters, one module per provider, registered by name on import."""
from app.channels import email, in_app, push, twilio_sms, web_push  # noqa: F401
from app.channels.base import (DeviceTarget, Message, Outcome, Result, adapter_for, channel_class, close_all, register,
                               registered_channels)

__all__ = ["DeviceTarget", "Message", "Outcome", "Result", "adapter_for", "channel_class", "close_all", "register",
           "registered_channels"]
