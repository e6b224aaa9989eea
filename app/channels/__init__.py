"""Channel adapters, one module per provider, registered by name on import."""
from app.channels import email, in_app  # noqa: F401
from app.channels.base import Message, Outcome, Result, adapter_for, close_all, register, registered_channels

__all__ = ["Message", "Outcome", "Result", "adapter_for", "close_all", "register", "registered_channels"]
