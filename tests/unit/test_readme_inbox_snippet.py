"""The README's inbox-link code for host products runs as printed and makes the link Herald accepts."""

from __future__ import annotations

import re
from pathlib import Path

from app.inbox.auth import inbox_url

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_python_snippet_makes_the_same_link_as_flask_inbox_link():
    snippet = re.search(r"<!-- inbox-link-python -->\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # a fresh namespace: the snippet brings its own imports

    made = namespace["herald_inbox_url"]("https://herald.example.com", "s3cret", "ana maria/1")

    assert made == inbox_url("https://herald.example.com", "s3cret", "ana maria/1")
    assert made.startswith("https://herald.example.com/inbox?user=ana%20maria%2F1&token=")
