"""The README and the manual (``docs/``, MkDocs): the site builds with ``--strict`` (every link,
anchor, picture and API reference resolves), and every ``mobilenets`` command line in their bash
and console blocks is accepted by the command line's own parser, so an example cannot drift from
the flags. Their Python blocks run as tests of their own (pytest-markdown-docs)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenets.cli.main import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(bash|console)\n(.*?)^```", re.M | re.S)


def command_lines(page: Path) -> list[str]:
    """The ``mobilenets ...`` invocations in a page's bash and console blocks (continuation
    lines joined; the shell's comments, pipes, ``&&`` and redirections split off)."""
    found = []
    for _, block in FENCE.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line.removeprefix("$ "), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            segment: list[str] = []
            for word in [*lexer, ";"]:
                if word and set(word) <= set("&|;<>"):
                    at = next((k for k, w in enumerate(segment) if w.endswith("mobilenets")), -1)
                    if 0 <= at < len(segment) - 1:
                        found.append(shlex.join(segment[at + 1 :]))
                    segment = []
                else:
                    segment.append(word)
    return found


EXAMPLES = [(p.name, line) for p in PAGES for line in command_lines(p)]


def test_the_pages_hold_command_lines_to_check() -> None:
    assert len(EXAMPLES) >= 35 and {line.split()[0] for _, line in EXAMPLES} == set(COMMANDS)


@pytest.mark.parametrize(("page", "line"), EXAMPLES)
def test_every_command_line_in_the_docs_parses(page: str, line: str) -> None:
    words = shlex.split(line)
    if words[0] in ("--help", "-h") or "--help" in words:
        return
    assert words[0] in COMMANDS, f"{page}: unknown command in `mobilenets {line}`"
    try:
        build_parser(only=words[0]).parse_args(words)
    except SystemExit:
        pytest.fail(f"{page}: `mobilenets {line}` does not parse")


def test_the_manual_builds_strictly(tmp_path) -> None:
    pytest.importorskip("mkdocs")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "cpu" / "index.html").exists()
    reference = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "quantize_onnx" in reference and "target_cpu" in reference
