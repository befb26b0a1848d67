#!/usr/bin/python3
"""Writes docs/man/meter-agent.yaml.5 from README.md's configuration and preset tables.

Why generated: the README's table is where every key is documented (and reviewed); the manual
page says the same thing for an administrator on the gateway, and must never fall behind.
tests/man/test_man_pages.py fails when the committed page differs from what this prints.

  docs/man/make_yaml_man.py            rewrite docs/man/meter-agent.yaml.5
  docs/man/make_yaml_man.py --stdout   print it instead
"""

from __future__ import annotations

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = os.path.join(ROOT, "docs", "man", "meter-agent.yaml.5")


def roff_text(markdown: str) -> str:
    """One table cell of Markdown as roff: `code` bold, **strong** bold, escapes."""
    text = markdown.replace("\\", "\\e")
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:
            out.append("\\fB" + part[1:-1].replace("-", "\\-") + "\\fR")
        else:
            out.append(re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", part))
    text = "".join(out)
    # A line must not start with a control character.
    return "\\&" + text if text.startswith((".", "'")) else text


def table(markdown: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after `heading`."""
    start = markdown.index(heading)
    rows = []
    for line in markdown[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]   # without the header row


def page(readme: str) -> str:
    keys = table(readme, "## Configuration")
    presets = table(readme, "### Presets")
    lines = [
        '.\\" Generated from README.md\'s tables by docs/man/make_yaml_man.py: edit those, then run it.',
        '.TH METER-AGENT.YAML 5 "2026-12-06" "meter-agent 0.1.0" "File Formats"',
        ".SH NAME",
        "meter-agent.yaml \\- configuration of meter-agent",
        ".SH SYNOPSIS",
        ".I /etc/meter-agent/agent.yaml",
        ".SH DESCRIPTION",
        "One YAML file, read by",
        ".BR meter-agent (1)",
        "at start-up and again on",
        ".BR SIGHUP",
        "(a valid file is swapped in, an invalid one refused while the running configuration",
        "stays). Unknown keys and keys written twice are errors, and every error names the file,",
        "line, column and key, e.g.",
        ".IP",
        "agent.yaml:4:11: metrics.energy.kind: expected one of counter, gauge, got 'countr'",
        ".PP",
        ".B meter-agent check-config --config",
        ".I FILE",
        "checks a file without touching anything. The documented example is",
        ".IR /usr/share/doc/meter-agent/agent.example.yaml .",
        "Durations are a whole number and a unit:",
        '.BR ms ", " s ", " m ", " h ", " d .',
        ".SH KEYS",
    ]
    for key, default, meaning in keys:
        lines += [".TP", roff_text(f"{key} (default: {default})"), roff_text(meaning)]
    lines += [
        ".SH PRESETS",
        "Used as",
        ".BR \"mappings: \\- preset: NAME\" ;",
        "any key written beside it replaces the preset's. Looked up in",
        ".B presets_dir",
        "(default",
        ".I presets/",
        "beside the configuration, then",
        ".IR /usr/share/meter-agent/presets ).",
    ]
    for name, topics, readings in presets:
        lines += [".TP", roff_text(name), roff_text(f"{topics}; readings: {readings}.")]
    lines += [
        ".SH FILES",
        ".TP",
        ".I /etc/meter-agent/agent.yaml",
        "The configuration of the packaged service.",
        ".TP",
        ".I /usr/share/meter-agent/presets/",
        "The shipped presets and their README.md (the whole mapping syntax).",
        ".SH SEE ALSO",
        ".BR meter-agent (1),",
        ".BR meter-central (1),",
        ".I /usr/share/doc/meter-agent/README.md",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as source:
        text = page(source.read())
    if argv[1:] == ["--stdout"]:
        sys.stdout.write(text)
    else:
        with open(PAGE, "w", encoding="utf-8") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
