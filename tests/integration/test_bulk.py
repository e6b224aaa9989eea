from app.extensions import db
from app.models import Suppression
from app.models.bulk import insert_ignoring_conflicts
from app.models.types import utcnow


def test_insert_ignoring_conflicts_counts_only_new_rows(app):
    rows = [{"channel": "email", "address": f"a{n}@example.com", "reason": "test", "created_at": utcnow()} for n in range(3)]
    assert insert_ignoring_conflicts(Suppression, rows, ["channel", "address"]) == 3
    more = rows[1:] + [{"channel": "email", "address": "new@example.com", "reason": "test", "created_at": utcnow()}]
    assert insert_ignoring_conflicts(Suppression, more, ["channel", "address"]) == 1
    db.session.commit()
    assert db.session.query(Suppression).count() == 4
