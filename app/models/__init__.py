"""SQLAlchemy models, one module per domain; importing this registers them all."""

from app.models.audiences import Audience, ImportJob
from app.models.broadcasts import Broadcast
from app.models.campaigns import Campaign, CampaignBatch
from app.models.content import Template, TemplateVersion
from app.models.notifications import Delivery, DeliveryEvent, IdempotencyKey, Notification
from app.models.outbound_webhooks import WebhookAttempt, WebhookEndpoint, WebhookMessage
from app.models.recipients import Device, DigestPreference, Preference, Recipient, Suppression
from app.models.rules import Rule, RuleSend
from app.models.staff import ApiKey, AuditEntry, StaffUser
from app.models.topics import Topic, TopicSubscription
from app.models.workflows import (
    Workflow,
    WorkflowDigest,
    WorkflowRun,
    WorkflowStepRun,
    WorkflowThrottleSlot,
    WorkflowVersion,
)

__all__ = [
    "Audience",
    "ImportJob",
    "Broadcast",
    "Campaign",
    "CampaignBatch",
    "ApiKey",
    "AuditEntry",
    "Delivery",
    "DeliveryEvent",
    "Device",
    "DigestPreference",
    "IdempotencyKey",
    "Notification",
    "Preference",
    "Recipient",
    "Rule",
    "RuleSend",
    "StaffUser",
    "Suppression",
    "Template",
    "TemplateVersion",
    "Topic",
    "TopicSubscription",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookMessage",
    "Workflow",
    "WorkflowDigest",
    "WorkflowRun",
    "WorkflowStepRun",
    "WorkflowThrottleSlot",
    "WorkflowVersion",
]
