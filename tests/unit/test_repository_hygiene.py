"""What a merge can leave behind unnoticed: conflict markers in a tracked file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^(<{7} |>{7} |={7}$)", re.M)


def test_no_tracked_file_holds_a_merge_conflict_marker():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in tracked:
        path = ROOT / name
        if (
            path.suffix in {".py", ".md", ".txt", ".html", ".js", ".css", ".toml", ".yml", ".yaml", ".sh", ".json", ""}
            and path.is_file()
        ):
            text = path.read_text(errors="replace")
            if MARKER.search(text):
                offenders.append(name)
    assert offenders == []
