"""README's two Quick-start commands are exactly what CI runs."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _commands(text):
    return [line.strip() for line in text.splitlines() if line.strip().startswith("pip install")]


def test_ci_runs_the_readme_commands():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S).group(1)
    readme_cmds = _commands(block)
    assert len(readme_cmds) == 2
    assert _commands((REPO / ".ci" / "run").read_text()) == readme_cmds
    assert "torch==2.13.0" in readme_cmds[0] and "pytest" in readme_cmds[1]
