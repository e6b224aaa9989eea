"""Schemathesis with every check, on every /v1 operation: the OpenAPI document and the validators agree.

What ``st run --checks all`` does, through schemathesis' engine against Herald under gunicorn: the examples, coverage,
fuzzing (positive and negative data) and stateful phases, each response checked for its status
code, content type, headers and body against the document, schema-valid requests accepted,
schema-violating ones refused, unsupported methods answered 405. Bounded (a fixed seed and
example count) so CI is repeatable and the run takes well under a minute.

Some rules are stated in the document as formats that JSON Schema generators cannot produce by
themselves; the generator is taught them here rather than loosening the API: an address
email-validator accepts (``format: email``), an IANA zone (``format: iana-time-zone``), a phone
number libphonenumber calls valid (``format: e164``), a P-256 public key on the curve
(``format: p256-public-key``) and a push endpoint on a public host (``format: public-https-url``). Two cross-field rules that
JSON Schema cannot express (the Idempotency-Key header equals the body's ``idempotency_key``
when both are sent; a batch names each ``user_id`` once), and the document-wide rule that no
string holds U+0000, are left out of positive cases only; negative cases keep them.
"""

from __future__ import annotations

import base64
import json
import time

import phonenumbers
import pytest
import requests
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from app.api.keys import create_api_key
from app.api.scopes import ALL_SCOPES
from app.inbox.tokens import sign_user_token
from app.schemas import TIME_ZONES
from tests.factories import make_recipient

EXAMPLES_PER_OPERATION = 20
SEED = 20261130


def _valid_numbers() -> list[str]:
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number(region)
        if example is not None:
            numbers.append(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    return numbers


def _p256_public_key(seed: int) -> str:
    key = ec.derive_private_key(seed, ec.SECP256R1()).public_key()
    raw = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def register_formats() -> None:
    names = [f"{name}{n}" for name in ("ana", "bo.b", "c+tag", "d_e") for n in range(25)]
    schemathesis.openapi.format(
        "email",
        st.builds(
            "{}@{}".format,
            st.sampled_from(names),
            st.sampled_from(["example.com", "mail.example.org", "xn--bcher-kva.de"]),
        ),
    )
    schemathesis.openapi.format("iana-time-zone", st.sampled_from(sorted(TIME_ZONES)))
    schemathesis.openapi.format("e164", st.sampled_from(_valid_numbers()))
    schemathesis.openapi.format("p256-public-key", st.sampled_from([_p256_public_key(seed) for seed in range(1, 26)]))
    schemathesis.openapi.format(
        "public-https-url", st.sampled_from([f"https://push.example.com/{n}" for n in range(25)])
    )


def _not_a_workflow_definition(case) -> bool:
    """A workflow's steps name templates, which must exist and have the step's channel, and an escalation names
    each channel once: facts of the database and a cross-field rule, stated in the document's words, not its
    schema. Generated definitions are left out of positive cases only; negative cases keep them."""
    return not (case.method.upper() == "PUT" and case.path == "/v1/workflows/{key}")


def _states_one_key(case) -> bool:
    header = (case.headers or {}).get("Idempotency-Key")
    body_key = case.body.get("idempotency_key") if isinstance(case.body, dict) else None
    return header is None or body_key is None or header == body_key


def _holds_no_nul(case) -> bool:
    parts = (case.body, case.path_parameters, case.query, case.headers)
    return "\\u0000" not in json.dumps(parts, default=str) and "\x00" not in json.dumps(
        parts, default=str, ensure_ascii=False
    )


def _names_each_user_once(case) -> bool:
    users = case.body.get("users") if isinstance(case.body, dict) else None
    if not isinstance(users, list):
        return True
    ids = [user.get("user_id") for user in users if isinstance(user, dict)]
    return len(ids) == len(set(ids))


def failures_of(schema) -> tuple[list[str], dict]:
    found, seen = [], {"cases": 0, "phases": set()}
    for event in from_schema(schema).execute():
        if isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)):
            seen["cases"] += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE:
                        case = event.recorder.cases[case_id].value
                        interaction = event.recorder.interactions.get(case_id)
                        answer = interaction.response if interaction else None
                        found.append(
                            f"{event.recorder.label}: {check.name}: {check.failure_info.failure.title} "
                            f"({check.failure_info.failure.message[:300]}) sent {case.path_parameters} "
                            f"{case.query} {str(case.body)[:300]} got "
                            f"{answer.status_code if answer else ''} {answer.content[:300] if answer else ''}"
                        )
        elif isinstance(event, events.PhaseFinished):
            seen["phases"].add((event.phase.name.value, event.status.value))
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            found.append(f"error: {getattr(event, 'info', event)}")
    return found, seen


# About a minute (1,153 cases: 52 s on SQLite, 103 s on PostgreSQL on a busy 2-core machine); the timeout leaves room for a loaded one.
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_every_v1_operation_passes_every_schemathesis_check(app, live_server):
    make_recipient(external_id="fuzz-user", email="fuzz@example.com")
    key = create_api_key("fuzz", rate_limit="1000000/minute", scopes=ALL_SCOPES)[1]
    user_token = sign_user_token(app.config["USER_TOKEN_SECRET"], "fuzz-user", int(time.time()) + 3600)
    register_formats()
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": live_server,
            "headers": {"Authorization": f"Bearer {key}"},
            # The embedded inbox's endpoints take a user token, not an API key.
            "operations": [
                {"include-path-regex": "^/inbox/api/", "headers": {"Authorization": f"Bearer {user_token}"}}
            ],
            # Generous: the suite shares two cores with other work, and a timeout is not what this test is about.
            "request-timeout": 60,
            "generation": {"max-examples": EXAMPLES_PER_OPERATION, "database": "none"},
            "phases": {"stateful": {"max-steps": 20}},
        }
    )
    document = requests.get(f"{live_server}/v1/openapi.json", timeout=60).json()
    schema = schemathesis.openapi.from_dict(document, config=config)

    @schema.hook
    def filter_case(context, case):
        if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
            return True
        return (
            _states_one_key(case)
            and _names_each_user_once(case)
            and _holds_no_nul(case)
            and _not_a_workflow_definition(case)
        )

    started = time.monotonic()
    found, seen = failures_of(schema)
    elapsed = time.monotonic() - started
    assert found == [], "\n".join(found)
    assert {phase for phase, _ in seen["phases"]} >= {"examples", "coverage", "fuzzing", "stateful"}, seen
    assert seen["cases"] > 14 * 10, seen
    print(f"schemathesis: {seen['cases']} cases in {elapsed:.1f}s")
