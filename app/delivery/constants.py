"""The vocabulary of the pipeline, shared by models, API schemas and jobs.

Channels are not here: the channel registry (app/channels/) owns them.
"""

NOTIFICATION_TYPES = ("marketing", "transactional", "security")
PRIORITIES = ("low", "normal", "high", "critical")
PLATFORMS = ("ios", "android", "web")

# Delivery state machine: PENDING -> SENDING -> DISPATCHED -> DELIVERED, or FAILED / SUPPRESSED / UNCERTAIN.
PENDING = "PENDING"
SENDING = "SENDING"
DISPATCHED = "DISPATCHED"
DELIVERED = "DELIVERED"
FAILED = "FAILED"
SUPPRESSED = "SUPPRESSED"
# A marketing send that was in flight when its worker died: it may have gone out, so it is not sent again
# (at most once); transactional and security ones are sent again with the same provider key (at least once).
UNCERTAIN = "UNCERTAIN"
DELIVERY_STATUSES = (PENDING, SENDING, DISPATCHED, DELIVERED, FAILED, SUPPRESSED, UNCERTAIN)
FINAL_STATUSES = (DISPATCHED, DELIVERED, FAILED, SUPPRESSED, UNCERTAIN)

# Preference rows with this category switch a whole channel off: a hard stop
# that even security notices respect.
ALL_CATEGORIES = "*"

ROLES = ("admin", "marketer")
