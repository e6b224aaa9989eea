"""CSV import end to end: upload, RQ job on "low", set-based upserts, progress in Redis, errors by line."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from rq import Queue
from sqlalchemy import event, func, select

from app.audiences.importer import progress_key, upsert_records
from app.audiences.imports import ImportRecord
from app.extensions import db
from app.models import ImportJob, Recipient
from app.redis_client import get_redis
from tests.factories import make_recipient, make_staff

PASSWORD = "correct horse battery"
HEADER = "user_id,email,phone,timezone,locale,balance,plan\n"


@pytest.fixture
def marketer(app, client):
    make_staff(email="mia@example.com", password=PASSWORD, role="marketer")
    client.post("/console/login", data={"email": "mia@example.com", "password": PASSWORD})
    return client


@pytest.fixture
def drain(run_jobs):
    """run_jobs, then forget the signed-in user flask-login cached in ``g``.

    The test client's requests share the test's app context, and the in-process
    worker ends each job with ``db.session.remove()``, which detaches that cached
    user; a real request always has an app context (and a user) of its own.
    """
    from flask import g

    def run() -> None:
        run_jobs()
        g.pop("_login_user", None)

    return run


def upload(client, text: str, name: str = "people.csv"):
    return client.post(
        "/console/audiences/import",
        data={"file": (io.BytesIO(text.encode()), name)},
        content_type="multipart/form-data",
    )


def big_csv(rows: int, bad_lines: dict[int, str]) -> str:
    lines = [HEADER]
    for number in range(rows):
        line = number + 2  # the header is line 1
        lines.append(bad_lines.get(line, f"u{number},u{number}@example.com,,Asia/Singapore,en,{number % 100},pro\n"))
    return "".join(lines)


def test_ten_thousand_rows_import_with_counts_and_errors_by_line(app, marketer, drain):
    # 200 users exist already: their rows update them and keep attributes the file does not name.
    for number in range(200):
        make_recipient(external_id=f"u{number}", email=None, timezone=None, attributes={"tier": "gold", "balance": -1})
    bad = {
        5: "u3,not-an-email,,Asia/Singapore,en,1,pro\n",
        1000: "u998,,12345,Asia/Singapore,en,1,pro\n",
        5002: "u5000,,,Mars/Base,en,1,pro\n",
        9999: ",nobody@example.com,,,,1,pro\n",
    }
    response = upload(marketer, big_csv(10_000, bad))
    assert response.status_code == 302
    job = db.session.scalar(select(ImportJob))
    assert response.headers["Location"].endswith(f"/console/audiences/imports/{job.id}")
    stored = Path(job.stored_path)
    assert stored.exists() and stored.parent == Path(app.instance_path) / "imports"
    assert Queue("low", connection=get_redis()).count == 1

    started = time.monotonic()
    drain()
    elapsed = time.monotonic() - started
    print(f"[bench] csv import 10,000 rows: {elapsed:.2f}s")

    db.session.expire_all()
    job = db.session.get(ImportJob, job.id)
    assert job.status == "done" and job.total == 10_000 and job.processed == 10_000
    assert job.error_count == 4
    assert [(e["line"], e["field"]) for e in job.errors] == [
        (5, "email"),
        (1000, "phone"),
        (5002, "timezone"),
        (9999, "user_id"),
    ]
    assert job.updated == 199 and job.inserted == 10_000 - 4 - 199  # u3 (line 5) is one of the 200 and is bad
    assert db.session.scalar(select(func.count()).select_from(Recipient)) == 200 + job.inserted
    updated = db.session.scalar(select(Recipient).where(Recipient.external_id == "u7"))
    assert updated.attributes == {"tier": "gold", "balance": 7, "plan": "pro"}
    assert updated.email == "u7@example.com" and updated.timezone == "Asia/Singapore"
    untouched = db.session.scalar(select(Recipient).where(Recipient.external_id == "u3"))
    assert untouched.email is None and untouched.attributes["balance"] == -1
    assert not stored.exists() and job.stored_path is None

    page = marketer.get(f"/console/audiences/imports/{job.id}").get_data(as_text=True)
    assert 'data-status="done"' in page and 'hx-trigger="every 1s"' not in page
    assert re.search(r'<td class="num">1000</td><td>phone</td><td>must be in E.164 format', page)
    assert re.search(r'data-testid="import-inserted">9797<', page)


def test_progress_page_polls_every_second_and_reads_redis_while_running(app, marketer):
    upload(marketer, HEADER + "u1,,,,,1,pro\n")
    job = db.session.scalar(select(ImportJob))
    get_redis().hset(
        progress_key(job.id),
        mapping={
            "status": "running",
            "total": 50_000,
            "processed": 12_000,
            "inserted": 11_000,
            "updated": 900,
            "errors": 3,
        },
    )
    html = marketer.get(f"/console/audiences/imports/{job.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert html.lstrip().startswith("<section") and 'hx-trigger="every 1s"' in html
    assert 'data-testid="import-processed">12000 / 50000<' in html
    assert '<progress max="50000" value="12000"' in html


def test_upserts_are_set_based_per_chunk(app):
    make_recipient(external_id="old-1", attributes={"a": 1})
    records = [ImportRecord("old-1", 2, {"locale": "pt"}, {"b": 2})] + [
        ImportRecord(f"new-{n}", n + 3, {}, {"n": n}) for n in range(500)
    ]
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        assert upsert_records(records) == (500, 1)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    db.session.commit()
    assert len(statements) == 3  # one SELECT, one multi-row INSERT, one (executemany) UPDATE
    old = db.session.scalar(select(Recipient).where(Recipient.external_id == "old-1"))
    assert old.locale == "pt" and old.attributes == {"a": 1, "b": 2}


def test_a_user_twice_in_the_file_ends_with_the_later_values(app, marketer, drain):
    upload(marketer, "user_id,plan,balance\nu1,free,1\nu1,pro,\n")
    drain()
    recipient = db.session.scalar(select(Recipient))
    assert recipient.attributes == {"plan": "pro", "balance": 1}
    assert db.session.scalar(select(ImportJob)).inserted == 1


def test_cells_are_typed_by_the_rules_the_import_page_states(app, marketer, drain):
    page = marketer.get("/console/audiences/import").get_data(as_text=True)
    assert 'data-testid="csv-typing-rules"' in page and "02134" in page
    upload(marketer, "user_id,zip,balance,ratio,account\nu1,02134,42,0.5,12345678901234567890\n")
    drain()
    recipient = db.session.scalar(select(Recipient))
    assert recipient.attributes == {"zip": "02134", "balance": 42, "ratio": 0.5, "account": "12345678901234567890"}


def test_a_file_without_user_id_is_refused_before_queueing(app, marketer):
    folder = Path(app.instance_path) / "imports"
    before = set(folder.glob("*.csv"))
    response = upload(marketer, "email,plan\na@example.com,pro\n")
    assert response.status_code == 422
    assert "no user_id column" in response.get_data(as_text=True)
    assert db.session.scalar(select(ImportJob)) is None
    assert Queue("low", connection=get_redis()).count == 0
    assert set(folder.glob("*.csv")) == before


def test_non_csv_and_non_utf8_uploads_are_refused_with_a_message(app, marketer):
    assert "Upload a .csv file." in upload(marketer, "user_id\n1\n", name="people.xlsx").get_data(as_text=True)
    response = marketer.post(
        "/console/audiences/import",
        data={"file": (io.BytesIO("user_id,näme\n1,x\n".encode("latin-1")), "p.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422 and "not UTF-8" in response.get_data(as_text=True)
    assert "Choose a CSV file." in marketer.post("/console/audiences/import", data={}).get_data(as_text=True)


def test_a_job_whose_file_vanished_fails_with_a_reason(app, marketer, drain):
    upload(marketer, HEADER + "u1,,,,,1,pro\n")
    job = db.session.scalar(select(ImportJob))
    Path(job.stored_path).unlink()
    drain()
    db.session.expire_all()
    job = db.session.get(ImportJob, job.id)
    assert job.status == "failed" and "no longer there" in job.message
