"""Demo data for `make run`: a few thousand recipients, templates, a low-balance rule, two staff accounts and an API key.

The data is loaded once per database: the demo admin's account marks it as
loaded, and everything is committed in one transaction, so a half-loaded
database cannot happen. Recipient data comes from a seeded random generator
(the same people on every install); passwords and the API key come from
:mod:`secrets` and are written to ``<instance>/demo-credentials.txt``
(mode 0600), the only place they are kept.
"""

from __future__ import annotations

import base64
import os
import random
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import insert, select

from app.api.keys import create_api_key
from app.demo_templates import TEMPLATES, template_variants
from app.extensions import db
from app.models import Device, Preference, Recipient, Rule, StaffUser, Template, TemplateVersion
from app.outbound_webhooks.endpoints import add_request_log_endpoint
from app.rules.definitions import DEFAULT_AUDIENCE
from app.rules.windows import COUNTRY_POLICY, DEFAULT_WINDOW
from app.topics.store import create_topic_with
from app.workflows.demo import add_demo_workflows

ADMIN_EMAIL = "admin@herald.local"
MARKETER_EMAIL = "marketer@herald.local"
API_KEY_NAME = "demo"
DEMO_RULE_NAME = "Low balance"
CREDENTIALS_FILE = "demo-credentials.txt"
RECIPIENT_COUNT = 3000
DEMO_INBOX_USER = "demo-00001"  # whose inbox link `make run` prints
DEMO_TEAM_SIZE = 12  # demo-00001 .. demo-00012 are in the "team" topic
RANDOM_SEED = 20261101

NO_TIMEZONE_SHARE = 0.10
PHONE_SHARE = 0.70
MOBILE_DEVICE_SHARE = 0.50
WEB_PUSH_SHARE = 0.01
LOW_BALANCE_SHARE = 0.05
QUIET_HOURS_SHARE = 0.30
HARD_STOP_SHARE = 0.01
RECENTLY_SEEN_SHARE = 0.90
MARKETING_EMAIL_OPT_OUT_SHARE = 0.15
SMS_OFF_SHARE = 0.03
PUSH_OFF_SHARE = 0.02


@dataclass(frozen=True)
class Region:
    """Where a demo recipient lives: time zone, country, usual locales and a phone pattern (``#`` = digit)."""

    timezone: str
    country: str
    locales: tuple[str, ...]
    phone_pattern: str


# Every pattern yields numbers phonenumbers accepts as valid; the test checks it.
REGIONS = (
    Region("Asia/Singapore", "SG", ("en",), "+6581######"),
    Region("America/Los_Angeles", "US", ("en", "es"), "+1415555####"),
    Region("America/New_York", "US", ("en", "es"), "+1212555####"),
    Region("America/Chicago", "US", ("en",), "+1312555####"),
    Region("Pacific/Honolulu", "US", ("en",), "+1808555####"),
    Region("America/St_Johns", "CA", ("en", "fr"), "+1709555####"),
    Region("Pacific/Pago_Pago", "AS", ("en",), "+1684733####"),
    Region("Pacific/Auckland", "NZ", ("en",), "+6421#######"),
    Region("Pacific/Chatham", "NZ", ("en",), "+6421#######"),
    Region("Pacific/Kiritimati", "KI", ("en",), "+6867#######"),
    Region("America/Sao_Paulo", "BR", ("pt-BR",), "+55119########"),
    Region("America/Mexico_City", "MX", ("es",), "+52551#######"),
    Region("Europe/London", "GB", ("en",), "+447400######"),
    Region("Europe/Lisbon", "PT", ("pt-BR", "en"), "+35191#######"),
    Region("Europe/Madrid", "ES", ("es",), "+346########"),
    Region("Europe/Paris", "FR", ("fr",), "+3361#######"),
    Region("Europe/Berlin", "DE", ("de",), "+49151########"),
    Region("Africa/Lagos", "NG", ("en",), "+23480########"),
    Region("Asia/Dubai", "AE", ("en",), "+97150#######"),
    Region("Asia/Kolkata", "IN", ("en",), "+9198########"),
    Region("Asia/Kathmandu", "NP", ("en",), "+977984#######"),
    Region("Asia/Tokyo", "JP", ("ja",), "+81901#######"),
    Region("Australia/Adelaide", "AU", ("en",), "+6141#######"),
    Region("Australia/Sydney", "AU", ("en",), "+6141#######"),
)


@dataclass(frozen=True)
class DemoCredentials:
    admin_password: str
    marketer_password: str
    api_key: str

    LABELS = {
        "admin_email": "console admin email",
        "admin_password": "console admin password",
        "marketer_email": "console marketer email",
        "marketer_password": "console marketer password",
        "api_key": f"API key ({API_KEY_NAME})",
    }

    def as_text(self) -> str:
        values = {"admin_email": ADMIN_EMAIL, "marketer_email": MARKETER_EMAIL, **self.__dict__}
        width = max(map(len, self.LABELS.values())) + 1
        return "".join(f"{(label + ':'):<{width}} {values[name]}\n" for name, label in self.LABELS.items())

    @classmethod
    def from_text(cls, text: str) -> DemoCredentials:
        by_label = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        names = {label: name for name, label in cls.LABELS.items()}
        values = {names[label.strip()]: value.strip() for label, value in by_label.items() if label.strip() in names}
        return cls(values["admin_password"], values["marketer_password"], values["api_key"])


def credentials_path(instance_path: str | Path) -> Path:
    return Path(instance_path) / CREDENTIALS_FILE


def read_credentials(instance_path: str | Path) -> DemoCredentials | None:
    path = credentials_path(instance_path)
    return DemoCredentials.from_text(path.read_text()) if path.exists() else None


def demo_loaded() -> bool:
    return db.session.scalar(select(StaffUser.id).filter_by(email=ADMIN_EMAIL)) is not None


def load_demo(instance_path: str | Path, count: int = RECIPIENT_COUNT) -> DemoCredentials:
    """Insert the demo data in one transaction and save the credentials; the caller checks :func:`demo_loaded`."""
    rng = random.Random(RANDOM_SEED)
    now = datetime.now(UTC)
    admin_password, marketer_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    admin = _add_staff(ADMIN_EMAIL, "admin", admin_password)
    _add_staff(MARKETER_EMAIL, "marketer", marketer_password)
    db.session.flush()
    _add_templates(created_by=admin.id)
    _add_low_balance_rule()
    db.session.flush()
    add_demo_workflows()
    add_request_log_endpoint(current_app.config["BASE_URL"])
    db.session.execute(insert(Recipient), [_recipient_row(number, rng, now) for number in range(1, count + 1)])
    recipient_ids = db.session.scalars(
        select(Recipient.id).where(Recipient.external_id.like("demo-%")).order_by(Recipient.id)
    ).all()
    _bulk_insert(Device, _device_rows(recipient_ids, rng, now))
    _bulk_insert(Preference, _preference_rows(recipient_ids, rng))
    create_topic_with("team", "Team", recipient_ids[:DEMO_TEAM_SIZE])  # "topic": "team" reaches demo-00001 and 11 more
    _, api_key = create_api_key(API_KEY_NAME)  # commits the whole demo at once
    credentials = DemoCredentials(admin_password, marketer_password, api_key)
    _save_credentials(credentials_path(instance_path), credentials)
    return credentials


def _bulk_insert(model, rows: list[dict]) -> None:
    if rows:
        db.session.execute(insert(model), rows)


def _add_staff(email: str, role: str, password: str) -> StaffUser:
    staff = StaffUser(email=email, role=role)
    staff.set_password(password)
    db.session.add(staff)
    return staff


def _add_templates(created_by: int) -> None:
    for key, (name, kind, category) in TEMPLATES.items():
        variants = template_variants(key)
        template = Template(key=key, name=name, type=kind, category=category, default_locale="en", current_version=1)
        template.versions.append(TemplateVersion(version=1, variants=variants, created_by=created_by))
        db.session.add(template)


def _add_low_balance_rule() -> None:
    """The neobank's daily alert, live from the first minute: in-app (and email to the mail sink) for the ~5 %
    below their own threshold, once per local day, 09:00-19:00 in each recipient's zone; the ~10 % without a
    zone are judged by their country attribute."""
    db.session.add(
        Rule(
            name=DEMO_RULE_NAME,
            enabled=True,
            audience=DEFAULT_AUDIENCE,
            type="transactional",
            category="low_balance",
            priority="normal",
            template_key="low_balance",
            channels=["in_app", "email"],
            window_start=DEFAULT_WINDOW[0],
            window_end=DEFAULT_WINDOW[1],
            every_days=1,
            no_timezone_policy=COUNTRY_POLICY,
        )
    )


def _recipient_row(number: int, rng: random.Random, now: datetime) -> dict:
    region = rng.choice(REGIONS)
    has_timezone = rng.random() >= NO_TIMEZONE_SHARE
    quiet = rng.random() < QUIET_HOURS_SHARE
    return {
        "external_id": f"demo-{number:05d}",
        "email": f"demo-{number:05d}@example.test",
        "phone": _phone_number(region.phone_pattern, rng) if rng.random() < PHONE_SHARE else None,
        "timezone": region.timezone if has_timezone else None,
        "locale": rng.choice(region.locales) if has_timezone else "en",
        "attributes": _attributes(region.country, rng),
        "hard_stop": rng.random() < HARD_STOP_SHARE,
        "quiet_start": clock(22, 0) if quiet else None,
        "quiet_end": clock(7, 0) if quiet else None,
        "last_seen_at": _last_seen(rng, now),
    }


def _phone_number(pattern: str, rng: random.Random) -> str:
    return "".join(str(rng.randrange(10)) if char == "#" else char for char in pattern)


def _attributes(country: str, rng: random.Random) -> dict:
    threshold = rng.choice((50, 50, 50, 20, 100))
    if rng.random() < LOW_BALANCE_SHARE:
        balance = rng.uniform(0, threshold * 0.95)
    else:
        balance = rng.uniform(threshold + 1, threshold + 2000)
    plan = "pro" if rng.random() < 0.25 else "free"
    return {"balance": round(balance, 2), "low_balance_threshold": threshold, "country": country, "plan": plan}


def _last_seen(rng: random.Random, now: datetime) -> datetime | None:
    if rng.random() < RECENTLY_SEEN_SHARE:
        return now - timedelta(seconds=rng.randrange(30 * 86400))
    return None if rng.random() < 0.5 else now - timedelta(days=rng.randrange(31, 365))


def _device_rows(recipient_ids: list[int], rng: random.Random, now: datetime) -> list[dict]:
    rows = []
    for recipient_id in recipient_ids:
        if rng.random() < MOBILE_DEVICE_SHARE:
            platform = rng.choice(("ios", "android"))
            token = rng.randbytes(32).hex() if platform == "ios" else _fcm_token(rng)
            rows.append(_device_row(recipient_id, platform, token, now))
        if rng.random() < WEB_PUSH_SHARE:
            rows.append(_web_push_row(recipient_id, rng, now))
    return rows


def _device_row(recipient_id: int, platform: str, token: str, now: datetime, p256dh=None, auth=None) -> dict:
    return {
        "recipient_id": recipient_id,
        "platform": platform,
        "token": token,
        "p256dh": p256dh,
        "auth": auth,
        "active": True,
        "last_seen_at": now,
        "created_at": now,
    }


def _fcm_token(rng: random.Random) -> str:
    """FCM registration tokens look like ``<instance id>:APA91b<opaque>``."""
    return f"{_b64url(rng.randbytes(16))}:APA91b{_b64url(rng.randbytes(105))}"


def _web_push_row(recipient_id: int, rng: random.Random, now: datetime) -> dict:
    """A subscription shaped like a browser's, with a real P-256 key so encryption works; never contacted."""
    host = rng.choice(("https://fcm.googleapis.com/fcm/send/", "https://updates.push.services.mozilla.com/wpush/v2/"))
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    p256dh = _b64url(public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
    return _device_row(
        recipient_id, "web", host + _b64url(rng.randbytes(96)), now, p256dh=p256dh, auth=_b64url(rng.randbytes(16))
    )


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _preference_rows(recipient_ids: list[int], rng: random.Random) -> list[dict]:
    rows = []
    for recipient_id in recipient_ids:
        if rng.random() < MARKETING_EMAIL_OPT_OUT_SHARE:
            rows.append({"recipient_id": recipient_id, "channel": "email", "category": "marketing", "enabled": False})
        if rng.random() < SMS_OFF_SHARE:
            rows.append({"recipient_id": recipient_id, "channel": "sms", "category": "*", "enabled": False})
        if rng.random() < PUSH_OFF_SHARE:
            rows.append({"recipient_id": recipient_id, "channel": "push", "category": "*", "enabled": False})
    return rows


def _save_credentials(path: Path, credentials: DemoCredentials) -> None:
    """Create the file 0600 from the start, so the secrets are never readable by others, even briefly."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("# Herald demo credentials, created by `flask seed-demo`.\n")
        handle.write(credentials.as_text())


def echo_credentials(instance_path: str | Path) -> None:
    path = credentials_path(instance_path)
    credentials = read_credentials(instance_path)
    if credentials is None:
        click.echo(f"The demo credentials file {path} is missing; create staff with `flask create-staff`.", err=True)
        return
    click.echo(credentials.as_text(), nl=False)
    click.echo(f"(saved in {path})")


@click.command("seed-demo")
@click.option(
    "--when-enabled",
    is_flag=True,
    help="Load only when HERALD_DEMO_DATA is on (the container image's migrate step passes this).",
)
@with_appcontext
def seed_demo(when_enabled: bool) -> None:
    """Load demo data once (recipients, templates, staff, an API key) and print the credentials."""
    if when_enabled and not current_app.config["DEMO_DATA"]:
        return
    instance_path = current_app.instance_path
    if demo_loaded():
        click.echo("Demo data is already loaded.")
    else:
        started = time.monotonic()
        load_demo(instance_path)
        click.echo(
            f"Loaded demo data: {RECIPIENT_COUNT} recipients, {len(TEMPLATES)} templates, "
            f"1 daily rule, 2 staff accounts, 1 API key ({time.monotonic() - started:.1f} s)."
        )
    echo_credentials(instance_path)
