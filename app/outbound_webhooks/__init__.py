"""OUTBOUND webhooks: Herald tells the host product what happened (accepted, sent, delivered, read, ...).

Not app/webhooks/, which holds the INBOUND callbacks of providers (email events, SMS status).

- ``events.py``   the event types and the payload of each (pure)
- ``signing.py``  Standard Webhooks secrets and signatures (pure)
- ``policy.py``   retry schedule and when an endpoint is disabled (pure)
- ``outbox.py``   :func:`emit`: the one call a fact's writer makes, in its own transaction (transactional outbox)
- ``dispatch.py`` the dispatcher: claim the oldest open message per (endpoint, user), POST, record
- ``endpoints.py`` registering, changing, rotating and replaying (shared by the API and the console)
- ``alerts.py``   the email to admins when an endpoint is disabled
"""
