"""SigV4 against AWS's published Signature Version 4 test suite (aws-sig-v4-test-suite).

Credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region us-east-1, service "service",
2015-08-30T12:36:00Z; each case is the suite's request and its expected Authorization signature.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.channels.sigv4 import authorization, canonical_request

WHEN = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
BASE = [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")]
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

CASES = [
    # name, method, path, query, extra headers, body, signature
    ("get-vanilla", "GET", "/", "", [], b"", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    (
        "get-vanilla-query-order-key-case",
        "GET",
        "/",
        "Param2=value2&Param1=value1",
        [],
        b"",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    (
        "get-vanilla-query-order-value",
        "GET",
        "/",
        "Param1=value2&Param1=value1",
        [],
        b"",
        "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
    ),
    (
        "get-vanilla-utf8-query",
        "GET",
        "/",
        "\u1234=bar",
        [],
        b"",
        "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    ),
    ("get-utf8", "GET", "/\u1234", "", [], b"", "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
    (
        "get-space",
        "GET",
        "/example space/",
        "",
        [],
        b"",
        "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    ),
    (
        "get-header-key-duplicate",
        "GET",
        "/",
        "",
        [("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")],
        b"",
        "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    ),
    (
        "get-header-value-trim",
        "GET",
        "/",
        "",
        [("My-Header1", " value1"), ("My-Header2", ' "a   b   c"')],
        b"",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    ),
    ("post-vanilla", "POST", "/", "", [], b"", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    (
        "post-vanilla-query",
        "POST",
        "/",
        "Param1=value1",
        [],
        b"",
        "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    ),
    (
        "post-header-value-case",
        "POST",
        "/",
        "",
        [("My-Header1", "VALUE1")],
        b"",
        "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
    ),
    (
        "post-x-www-form-urlencoded",
        "POST",
        "/",
        "",
        [("Content-Type", "application/x-www-form-urlencoded")],
        b"Param1=value1",
        "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    ),
    (
        "post-x-www-form-urlencoded-parameters",
        "POST",
        "/",
        "",
        [("Content-Type", "application/x-www-form-urlencoded; charset=utf8")],
        b"Param1=value1",
        "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "query", "extra", "body", "signature"), CASES, ids=[c[0] for c in CASES]
)
def test_signature_matches_aws_published_suite(name, method, path, query, extra, body, signature):
    headers = BASE[:1] + extra + BASE[1:]
    header = authorization(
        method,
        path,
        query,
        headers,
        body,
        access_key="AKIDEXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        service="service",
        when=WHEN,
    )
    signed = ";".join(sorted({n.lower() for n, _v in headers}))
    assert header == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


def test_canonical_request_matches_the_suites_get_vanilla_creq():
    text, signed = canonical_request("GET", "/", "", BASE, EMPTY)
    assert text == f"GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY}"
    assert signed == "host;x-amz-date"
