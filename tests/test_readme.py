"""The README's Python example runs as written (in a temporary folder)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has no Python example"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert "Bland-Altman" in out and "Fleiss 1971" in out  # the two printed tables
    assert re.search(r"35 Gy in bordet is [\d.]+ Gy \[[\d.]+, [\d.]+\] in montpellier", out)
    assert (tmp_path / "results" / "voi_dose").is_dir()
