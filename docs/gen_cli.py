"""Regenerate docs/cli.md from every command's --help (run by `make docs`)."""
import sys
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from analyzer.cli import app  # noqa: E402

r = CliRunner()
cmds = [[c.name or c.callback.__name__] for c in app.registered_commands]
for g in app.registered_groups:
    cmds += [[g.name, c.name or c.callback.__name__] for c in g.typer_instance.registered_commands]
out = ["# Command reference", "", "Generated from `--help` by `make docs`; do not edit by hand.", ""]
for c in cmds:
    res = r.invoke(app, c + ["--help"], env={"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"})
    out += [f"## mmtriage {' '.join(c)}", "", "```", res.stdout.rstrip(), "```", ""]
(ROOT / "docs" / "cli.md").write_text("\n".join(out))
