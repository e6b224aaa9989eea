"""The one delivery pipeline: producers (API, campaigns, rules) create notification and delivery rows and hand
delivery ids to :func:`app.pipeline.deliver.deliver`, which re-checks each origin's policy, claims, sends and
records them. Start reading at ``deliver.py``.

- ``facts.py``    people, routing facts, the marketing cap, the template context -- set-based for a chunk
- ``route.py``    routing an API notification into deliveries
- ``origin.py``   where a notification came from and what that says about sending it now
- ``content.py``  a chunk's rows in one query, messages rendered through the compiled-template cache
- ``claims.py``   the conditional UPDATE that one sender wins
- ``sending.py``  an adapter called with the channel's concurrency
- ``outcomes.py`` results recorded in bulk: retries, dead letters, dead devices, hard bounces
"""
