"""The README's user-token code for host products, Python (PyJWT) and Node (crypto only), runs as printed and makes
tokens Herald accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from app.inbox.tokens import TokenRefused, verify_user_token

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "the-host-and-herald-share-this-key-0123456789"


def snippet(marker: str, language: str) -> str:
    return re.search(rf"<!-- {marker} -->\n```{language}\n(.*?)```", README.read_text(), re.S).group(1)


def test_the_python_snippet_makes_a_token_herald_accepts():
    namespace: dict = {}
    exec(compile(snippet("user-token-python", "python"), "README.md", "exec"), namespace)  # brings its own imports

    token = namespace["herald_user_token"](SECRET, "ana maria/1", minutes=5, scope="inbox stream")

    verified = verify_user_token(token, SECRET, "stream", time.time(), 86400)
    assert verified.user_id == "ana maria/1" and verified.scopes == {"inbox", "stream"}
    assert 290 <= verified.expires_at - time.time() <= 300
    with pytest.raises(TokenRefused) as refused:
        verify_user_token(token, SECRET, "preferences", time.time(), 86400)
    assert refused.value.reason == "wrong_scope"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_snippet_makes_a_token_herald_accepts(tmp_path):
    script = tmp_path / "host.js"
    script.write_text(
        snippet("user-token-node", "js")
        + "console.log(heraldUserToken(process.argv[2], process.argv[3]));\n"
        + 'console.log(heraldUserToken(process.argv[2], process.argv[3], { minutes: 1, scope: "preferences" }));\n'
    )

    run = subprocess.run(["node", str(script), SECRET, "ana maria/1"], capture_output=True, text=True, timeout=30)

    assert run.returncode == 0, run.stderr
    everything, preferences_only = run.stdout.split()
    now = time.time()
    verified = verify_user_token(everything, SECRET, "inbox", now, 86400)
    assert verified.user_id == "ana maria/1" and verified.scopes == {"inbox", "stream", "preferences"}
    assert 890 <= verified.expires_at - now <= 900
    assert verify_user_token(preferences_only, SECRET, "preferences", now, 86400).scopes == {"preferences"}
    with pytest.raises(TokenRefused) as refused:
        verify_user_token(everything, "some-other-key-0123456789-0123456789", "inbox", now, 86400)
    assert refused.value.reason == "bad_signature"
