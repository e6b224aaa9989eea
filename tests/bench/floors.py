"""Floors for the in-app campaign fan-out on PostgreSQL, measured in the benchmark's own run (issue 16).

- :func:`lean_rate`: a lean prototype with Herald's semantics and none of its layers -- the same routing
  (preferences, hard stop, the marketing cap read and counted in Redis), the same rendering (the template's
  compiled renderer), the same idempotency (``ON CONFLICT (campaign_id, recipient_id) DO NOTHING``), the same
  rows (notification with its inbox content, an in-app delivery DELIVERED, its two events) and the same realtime
  announce; raw psycopg, no ORM: one read and ONE write round trip per batch of 1,000.
- :func:`copy_rate`: bare ``COPY`` of the same rows (no routing, rendering, Redis or conflict handling): what the
  database can take from one process.
"""

from __future__ import annotations

import json
import time

from flask import current_app

from app.delivery import routing
from app.extensions import db
from app.models.notifications import new_notification_id
from app.models.types import utcnow
from app.pipeline.facts import Person, marketing_sent_last_hour, record_marketing_sends, render_context
from app.realtime.publish import publish_to_user
from app.redis_client import get_redis, key

BATCH = 1000
PEOPLE = """
SELECT r.id, r.external_id, r.email, r.phone, r.timezone, r.locale, r.attributes, r.hard_stop, r.quiet_start,
       r.quiet_end, COALESCE((SELECT json_agg(json_build_array(p.channel, p.category, p.enabled))
                              FROM preferences p WHERE p.recipient_id = r.id AND p.channel = 'in_app'), '[]')
FROM recipients r WHERE r.id = ANY(%s) ORDER BY r.id
"""
WRITE = """
WITH n AS (
  INSERT INTO notifications (id, recipient_id, type, category, priority, template_key, template_version, title, body,
                             data, channels, status, created_at, routed_at, inbox_at, campaign_id, origin)
  SELECT id, rid, %(type)s, %(category)s, %(priority)s, %(key)s, 1, title, body, '{}', '["in_app"]', 'routed',
         %(now)s, %(now)s, %(now)s, %(campaign)s, %(origin)s
  FROM unnest(%(ids)s::varchar[], %(rids)s::bigint[], %(titles)s::text[], %(bodies)s::text[]) AS u (id, rid, title, body)
  ON CONFLICT (campaign_id, recipient_id) DO NOTHING RETURNING id
), d AS (
  INSERT INTO deliveries (notification_id, channel, status, attempts, provider, claimed_at, dispatched_at,
                          delivered_at, created_at, updated_at)
  SELECT id, 'in_app', 'DELIVERED', 1, 'herald', %(now)s, %(now)s, %(now)s, %(now)s, %(now)s FROM n RETURNING id
), e AS (
  INSERT INTO delivery_events (delivery_id, status, detail, created_at)
  SELECT d.id, s.status, s.detail, %(now)s FROM d CROSS JOIN (VALUES ('SENDING', NULL), ('DELIVERED', 'inbox'))
         AS s (status, detail)
)
SELECT n.id FROM n
"""


def _batches(ids: list[int]):
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


def lean_rate(campaign_id: int, template, renderer, ids: list[int]) -> float:
    """Recipients/s of the lean prototype over ``ids`` (their rows are left for :func:`cleanup`)."""
    cap = current_app.config["MARKETING_CAP_PER_HOUR"]
    note = routing.NotificationFacts(template.type, template.category, "low", ("in_app",))
    raw = db.engine.raw_connection()
    conn = raw.driver_connection
    started = time.perf_counter()
    try:
        for batch in _batches(ids):
            now = utcnow()
            with conn.cursor() as cur:
                cur.execute(PEOPLE, (batch,))
                rows = cur.fetchall()
            conn.commit()
            people = [Person(*row[:10]) for row in rows]
            recent = marketing_sent_last_hour([p.id for p in people], now) if cap > 0 else [0] * len(people)
            out = {"ids": [], "rids": [], "titles": [], "bodies": []}
            for person, row, count in zip(people, rows, recent, strict=True):
                facts = routing.RecipientFacts(
                    hard_stop=person.hard_stop,
                    timezone=person.timezone,
                    quiet_start=person.quiet_start,
                    quiet_end=person.quiet_end,
                    preferences={(c, k): e for c, k, e in row[10]},
                    reachable=routing.reachable_channels(person.email, person.phone, set()),
                    suppressed=frozenset(),
                    marketing_sent_last_hour=count,
                )
                if routing.route(note, facts, now, cap)[0].action != routing.SEND:
                    continue
                context = render_context(person, _Note(template))
                content = renderer.render("in_app", person.locale, context)
                out["ids"].append(new_notification_id())
                out["rids"].append(person.id)
                out["titles"].append(content["title"])
                out["bodies"].append(content["body"])
            with conn.cursor() as cur:
                cur.execute(
                    WRITE,
                    {
                        **out,
                        "type": template.type,
                        "category": template.category,
                        "priority": "low",
                        "key": template.key,
                        "now": now,
                        "campaign": campaign_id,
                        "origin": f"campaign:{campaign_id}",
                    },
                )
                landed = {row[0] for row in cur.fetchall()}
            conn.commit()
            record_marketing_sends({r: n for r, n in zip(out["rids"], out["ids"], strict=True) if n in landed}, now)
            pipe = get_redis().pipeline(transaction=False)
            for rid, nid, title in zip(out["rids"], out["ids"], out["titles"], strict=True):
                if nid in landed:
                    payload = {"id": nid, "title": title, "category": template.category}
                    publish_to_user(rid, "notification", payload, event_id=nid, pipeline=pipe)
            pipe.execute()
    finally:
        raw.close()
    return len(ids) / (time.perf_counter() - started)


class _Note:
    """What ``render_context`` reads of a notification, for a template campaign (no literal title/body)."""

    def __init__(self, template):
        self.id, self.type, self.category = "", template.type, template.category
        self.title = self.body = None
        self.data = {}


def copy_rate(campaign_id: int, template, ids: list[int]) -> float:
    """Recipients/s of bare COPY: the same notification, delivery and two event rows per recipient."""
    raw = db.engine.raw_connection()
    conn = raw.driver_connection
    origin = f"campaign:{campaign_id}"
    started = time.perf_counter()
    try:
        for batch in _batches(ids):
            now = utcnow()
            with conn.cursor() as cur:
                cur.execute("SELECT nextval('deliveries_id_seq') FROM generate_series(1, %s)", (len(batch),))
                delivery_ids = [row[0] for row in cur.fetchall()]
                notes = [new_notification_id() for _ in batch]
                with cur.copy(
                    "COPY notifications (id, recipient_id, type, category, priority, template_key, template_version,"
                    " title, body, data, channels, status, created_at, routed_at, inbox_at, campaign_id, origin)"
                    " FROM STDIN"
                ) as copy:
                    for nid, rid in zip(notes, batch, strict=True):
                        copy.write_row(
                            (nid, rid, template.type, template.category, "low", template.key, 1, f"Spring for b-{rid}",
                             "New colours", "{}", json.dumps(["in_app"]), "routed", now, now, now, campaign_id, origin)
                        )  # fmt: skip
                with cur.copy(
                    "COPY deliveries (id, notification_id, channel, status, attempts, provider, claimed_at,"
                    " dispatched_at, delivered_at, created_at, updated_at) FROM STDIN"
                ) as copy:
                    for did, nid in zip(delivery_ids, notes, strict=True):
                        copy.write_row((did, nid, "in_app", "DELIVERED", 1, "herald", now, now, now, now, now))
                with cur.copy("COPY delivery_events (delivery_id, status, detail, created_at) FROM STDIN") as copy:
                    for did in delivery_ids:
                        copy.write_row((did, "SENDING", None, now))
                        copy.write_row((did, "DELIVERED", "inbox", now))
            conn.commit()
    finally:
        raw.close()
    return len(ids) / (time.perf_counter() - started)


def cleanup(campaign_id: int, recipient_ids: list[int]) -> None:
    """Remove a floor's rows and its marks on the marketing cap (the campaign under test starts from none)."""
    pipe = get_redis().pipeline(transaction=False)
    for recipient_id in recipient_ids:
        pipe.delete(key("cap", recipient_id))
    pipe.execute()
    raw = db.engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cur:
            cur.execute(
                "DELETE FROM deliveries WHERE notification_id IN (SELECT id FROM notifications WHERE campaign_id = %s)",
                (campaign_id,),
            )
            cur.execute("DELETE FROM notifications WHERE campaign_id = %s", (campaign_id,))
        raw.driver_connection.commit()
    finally:
        raw.close()
