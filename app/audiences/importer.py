"""CSV import of recipients, run as a background job: validate row by row, upsert in chunks of 1000.

The upload waits in ``<instance>/imports/`` until the job ends (done or
failed); progress lives in Redis for the page's one-second poll and in the
ImportJob row, which also keeps the result. Writes are set-based: per
chunk one SELECT of the users that exist, one multi-row INSERT .. ON
CONFLICT DO NOTHING of the new ones and one executemany UPDATE of the rest.
A re-run (RQ retries a job whose worker died) upserts the same rows again
with the same result.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from werkzeug.datastructures import FileStorage

from app import tasks
from app.audiences.imports import ImportRecord, header_problems, parse_row, read_rows
from app.extensions import db
from app.models import AuditEntry, ImportJob, Recipient, StaffUser
from app.models.types import utcnow
from app.redis_client import get_redis, key

log = logging.getLogger(__name__)

CHUNK = 1000
KEPT_ERRORS = 1000
PROGRESS_TTL = 24 * 3600


class UploadRejected(ValueError):
    """The file cannot be imported at all (no user_id column, not UTF-8...)."""


def upload_folder() -> Path:
    folder = Path(current_app.instance_path) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def progress_key(import_id: int) -> str:
    return key("import", import_id)


def _open(path: Path):
    # utf-8-sig: spreadsheets put a byte-order mark before the first column name.
    return open(path, encoding="utf-8-sig", newline="")


def check_file(path: Path) -> None:
    """Refuse a file whose header is unusable before queueing it."""
    try:
        with _open(path) as handle:
            header, _rows = read_rows(handle)
    except UnicodeDecodeError:
        raise UploadRejected("The file is not UTF-8 text. Save it as CSV UTF-8 and upload it again.") from None
    problems = header_problems(header)
    if problems:
        raise UploadRejected(" ".join(problems))


def create_import(upload: FileStorage, staff: StaffUser) -> ImportJob:
    """Keep the upload in the instance folder, record the import and queue ``jobs.imports.run_import`` on ``low``."""
    path = upload_folder() / f"{uuid.uuid4().hex}.csv"
    upload.save(path)
    try:
        check_file(path)
    except UploadRejected:
        path.unlink(missing_ok=True)
        raise
    filename = Path(upload.filename or "upload.csv").name[:255]
    job = ImportJob(filename=filename, stored_path=str(path), status="queued", errors=[], created_by=staff.id)
    db.session.add(job)
    db.session.flush()
    db.session.add(
        AuditEntry(
            staff_user_id=staff.id,
            actor=staff.email,
            action="recipients.import",
            target_type="import",
            target_id=str(job.id),
            before=None,
            after={"filename": filename},
        )
    )
    db.session.commit()
    tasks.enqueue("jobs.imports.run_import", job.id, priority="low")
    return job


def _count_rows(path: Path) -> int:
    with _open(path) as handle:
        _header, rows = read_rows(handle)
        return sum(1 for _ in rows)


def _publish(job: ImportJob) -> None:
    get_redis().hset(
        progress_key(job.id),
        mapping={
            "status": job.status,
            "total": job.total,
            "processed": job.processed,
            "inserted": job.inserted,
            "updated": job.updated,
            "errors": job.error_count,
        },
    )
    get_redis().expire(progress_key(job.id), PROGRESS_TTL)


def read_progress(job: ImportJob) -> dict:
    """The live figures from Redis while the job runs; the row's once it has ended (or Redis forgot)."""
    figures = {
        "status": job.status,
        "total": job.total,
        "processed": job.processed,
        "inserted": job.inserted,
        "updated": job.updated,
        "errors": job.error_count,
    }
    if job.status in ("queued", "running"):
        live = get_redis().hgetall(progress_key(job.id))
        for name, value in live.items():
            name, value = name.decode(), value.decode()
            figures[name] = value if name == "status" else int(value)
    return figures


def run_import(import_id: int) -> str:
    """The work of the RQ job ``jobs.imports.run_import``. Returns the final status."""
    job = db.session.get(ImportJob, import_id)
    if job is None or job.status in ("done", "failed"):
        return "gone"
    path = Path(job.stored_path or "")
    if not path.exists():
        return _finish(job, "failed", "The uploaded file is no longer there; upload it again.")
    job.status, job.processed, job.inserted, job.updated, job.error_count, job.errors = "running", 0, 0, 0, 0, []
    try:
        job.total = _count_rows(path)
        db.session.commit()
        _publish(job)
        _import_rows(job, path)
    except UnicodeDecodeError:
        db.session.rollback()
        return _finish(job, "failed", "The file is not UTF-8 text past its first line. Save it as CSV UTF-8.")
    except Exception as error:  # the row must say failed, whatever happened; the log has the traceback
        log.exception("import %s failed", import_id)
        db.session.rollback()
        return _finish(job, "failed", f"The import stopped: {error.__class__.__name__}. Rows before it were saved.")
    return _finish(job, "done", None)


def _finish(job: ImportJob, status: str, message: str | None) -> str:
    job = db.session.get(ImportJob, job.id)
    job.status, job.message, job.finished_at = status, message, utcnow()
    if job.stored_path:
        Path(job.stored_path).unlink(missing_ok=True)
        job.stored_path = None
    db.session.commit()
    _publish(job)
    return status


def _import_rows(job: ImportJob, path: Path) -> None:
    errors: list[dict] = []
    chunk: dict[str, ImportRecord] = {}
    seen = 0
    with _open(path) as handle:
        _header, rows = read_rows(handle)
        for line, row in rows:
            seen += 1
            record, row_errors = parse_row(line, row)
            if row_errors:
                job.error_count += len(row_errors)
                errors.extend(e.as_dict() for e in row_errors[: max(0, KEPT_ERRORS - len(errors))])
            elif record.external_id in chunk:
                chunk[record.external_id].merge(record)
            else:
                chunk[record.external_id] = record
            # A chunk is at most 1000 users; progress moves every 1000 lines even when most are bad.
            if len(chunk) >= CHUNK or seen % CHUNK == 0:
                _flush(job, chunk, errors, seen)
                chunk = {}
    _flush(job, chunk, errors, seen)


def _flush(job: ImportJob, chunk: dict[str, ImportRecord], errors: list[dict], seen: int) -> None:
    inserted, updated = upsert_records(list(chunk.values()))
    job.inserted += inserted
    job.updated += updated
    job.processed = seen
    job.errors = list(errors)
    db.session.commit()
    _publish(job)


def upsert_records(records: list[ImportRecord]) -> tuple[int, int]:
    """Insert the users that are new and update the others, in three statements. Returns (inserted, updated).

    Attributes merge: the CSV's columns overwrite those attributes and leave
    the recipient's other attributes alone.
    """
    if not records:
        return 0, 0
    now = utcnow()
    by_id = {r.external_id: r for r in records}
    existing = _existing(list(by_id))
    new_rows = [
        {
            "external_id": r.external_id,
            "email": r.profile.get("email"),
            "phone": r.profile.get("phone"),
            "timezone": r.profile.get("timezone"),
            "locale": r.profile.get("locale", "en"),
            "attributes": r.attributes,
            "hard_stop": False,
            "created_at": now,
            "updated_at": now,
        }
        for r in records
        if r.external_id not in existing
    ]
    inserted = _insert_new(new_rows)
    to_update = [r for r in records if r.external_id in existing]
    if inserted < len(new_rows):
        # Another writer created some of them meanwhile: update every row of the chunk
        # (re-applying what we just inserted changes nothing).
        existing, to_update = _existing(list(by_id)), records
    if to_update:
        db.session.execute(update(Recipient), [_update_row(existing[r.external_id], r, now) for r in to_update])
    return inserted, len(records) - inserted


def _insert_new(rows: list[dict]) -> int:
    """One multi-row INSERT .. ON CONFLICT DO NOTHING; RETURNING counts the rows it really inserted.

    (``rowcount`` is -1 on PostgreSQL for a multi-row insert, so it cannot be the count.)
    """
    if not rows:
        return 0
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(Recipient)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["external_id"])
        .returning(Recipient.id)
    )
    return len(db.session.execute(statement).all())


def _existing(external_ids: list[str]) -> dict[str, tuple]:
    rows = db.session.execute(
        select(
            Recipient.external_id,
            Recipient.id,
            Recipient.email,
            Recipient.phone,
            Recipient.timezone,
            Recipient.locale,
            Recipient.attributes,
        ).where(Recipient.external_id.in_(external_ids))
    ).all()
    return {row[0]: row[1:] for row in rows}


def _update_row(current: tuple, record: ImportRecord, now) -> dict:
    recipient_id, email, phone, timezone, locale, attributes = current
    values = {"email": email, "phone": phone, "timezone": timezone, "locale": locale}
    values.update(record.profile)
    return {"id": recipient_id, **values, "attributes": {**(attributes or {}), **record.attributes}, "updated_at": now}
