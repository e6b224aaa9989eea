"""AWS Signature Version 4 with the standard library (what SES needs; no SDK).

https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html -- tested against AWS's
published test suite (tests/unit/test_sigv4.py). The path is given as the caller means it (unencoded)
and encoded once here, as the suite does; header values are trimmed and inner runs of spaces collapsed.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from urllib.parse import parse_qsl, quote

ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), day)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def canonical_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    encoded = sorted((quote(name, safe="-_.~"), quote(value, safe="-_.~")) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_request(
    method: str, path: str, query: str, headers: list[tuple[str, str]], payload_hash: str
) -> tuple[str, str]:
    """(the canonical request, the signed header names) for headers given as (name, value) pairs, repeats allowed."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    names = sorted(merged)
    canonical_headers = "".join(f"{name}:{','.join(merged[name])}\n" for name in names)
    signed = ";".join(names)
    text = "\n".join(
        [method, quote(path or "/", safe="/-_.~"), canonical_query(query), canonical_headers, signed, payload_hash]
    )
    return text, signed


def authorization(
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    when: datetime,
) -> str:
    """The ``Authorization`` header for a request whose headers already carry Host and X-Amz-Date."""
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    creq, signed = canonical_request(method, path, query, headers, hashlib.sha256(body).hexdigest())
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(creq.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret_key, day, region, service), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"


def amz_date(when: datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%SZ")
