"""The vocabulary of the pipeline, shared by models, API schemas and jobs.

Channels are not here: the channel registry (app/channels/) owns them.
"""

NOTIFICATION_TYPES = ("marketing", "transactional", "security")
PRIORITIES = ("low", "normal", "high", "critical")
PLATFORMS = ("ios", "android", "web")

# Delivery state machine: PENDING -> SENDING -> DISPATCHED -> DELIVERED, or FAILED / SUPPRESSED.
PENDING = "PENDING"
SENDING = "SENDING"
DISPATCHED = "DISPATCHED"
DELIVERED = "DELIVERED"
FAILED = "FAILED"
SUPPRESSED = "SUPPRESSED"
DELIVERY_STATUSES = (PENDING, SENDING, DISPATCHED, DELIVERED, FAILED, SUPPRESSED)
FINAL_STATUSES = (DISPATCHED, DELIVERED, FAILED, SUPPRESSED)

# Preference rows with this category switch a whole channel off: a hard stop
# that even security notices respect.
ALL_CATEGORIES = "*"

ROLES = ("admin", "marketer")
