"""The manual pages say what the programs do: every command and option `--help` lists is in
meter-agent(1) and meter-central(1), and meter-agent.yaml(5) is exactly what
docs/man/make_yaml_man.py makes of README.md's configuration table (so every key there).

  METER_AGENT_BINARY=build/agent/meter-agent /usr/bin/python3 -m pytest -q tests/man
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAN = os.path.join(ROOT, "docs", "man")


def man_text(name: str) -> str:
    """The page's words as a reader sees them: font escapes dropped, \\- read as -."""
    with open(os.path.join(MAN, name), encoding="utf-8") as source:
        text = source.read()
    text = re.sub(r"\\f[BIRP]", "", text).replace("\\-", "-").replace("\\&", "")
    return text


def options_in(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-h)\b", help_text))


def agent_binary() -> str:
    path = os.environ.get("METER_AGENT_BINARY", os.path.join(ROOT, "build", "agent",
                                                             "meter-agent"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"no meter-agent binary at {path} (set METER_AGENT_BINARY)")
    return path


def test_every_agent_command_and_option_is_in_meter_agent_1():
    help_text = subprocess.run([agent_binary(), "--help"], capture_output=True, text=True)
    text = help_text.stdout + help_text.stderr
    commands = re.findall(r"^  ([a-z][a-z-]+)\s", text.split("Options:")[0], re.MULTILINE)
    options = options_in(text)
    assert len(commands) >= 8 and len(options) >= 8, text
    page = man_text("meter-agent.1")
    commands_section = page.split(".SH COMMANDS")[1].split(".SH OPTIONS")[0]
    options_section = page.split(".SH OPTIONS")[1].split(".SH EXIT STATUS")[0]
    missing = [c for c in commands if not re.search(rf"^\.B[IR]* {re.escape(c)}\b",
                                                     commands_section, re.MULTILINE)]
    missing += [o for o in sorted(options) if o not in options_section]
    assert not missing, f"in `meter-agent --help` but not in docs/man/meter-agent.1: {missing}"


def central_helps() -> list[tuple[str, str]]:
    """(command, its --help text) for every command and sub-command of `python3 -m central`,
    from the parser itself (one import instead of a process per --help)."""
    sys.path.insert(0, ROOT)
    from central.cli import _parser  # noqa: PLC0415

    def walk(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, str]]:
        out = [(name, parser.format_help())]
        for action in parser._actions:   # argparse keeps sub-parsers only here
            if isinstance(action, argparse._SubParsersAction):
                for child, subparser in action.choices.items():
                    out += walk(subparser, f"{name} {child}".strip())
        return out
    return walk(_parser(), "")


def test_every_central_command_and_option_is_in_meter_central_1():
    page = man_text("meter-central.1")
    options_section = page.split(".SH OPTIONS")[1].split(".SH ENVIRONMENT")[0]
    missing, seen = [], 0
    for name, text in central_helps()[1:]:
        seen += 1
        if name.split()[-1] not in page:
            missing.append(name)
        missing += [f"{name} {o}" for o in sorted(options_in(text)) if o not in options_section]
    assert seen >= 10
    assert not missing, f"in `python3 -m central ... --help` but not in meter-central.1: {missing}"


def test_meter_agent_yaml_5_is_generated_from_the_readme():
    generated = subprocess.run([sys.executable, os.path.join(MAN, "make_yaml_man.py"),
                                "--stdout"], capture_output=True, text=True, check=True).stdout
    with open(os.path.join(MAN, "meter-agent.yaml.5"), encoding="utf-8") as source:
        committed = source.read()
    assert committed == generated, \
        "README.md's configuration table changed: run docs/man/make_yaml_man.py"


def test_every_key_of_the_readme_table_is_in_meter_agent_yaml_5():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as source:
        readme = source.read()
    section = readme.split("## Configuration")[1].split("### Presets")[0]
    keys = re.findall(r"^\| `([^`]+)`", section, re.MULTILINE)
    assert len(keys) >= 30
    page = man_text("meter-agent.yaml.5")
    assert [k for k in keys if k not in page] == []


def test_the_pages_render_without_warnings():
    for name in ("meter-agent.1", "meter-agent.yaml.5", "meter-central.1"):
        run = subprocess.run(["man", "--warnings", "-l", "-Tutf8", os.path.join(MAN, name)],
                             capture_output=True, text=True,
                             env={**os.environ, "MANWIDTH": "80"})
        assert run.returncode == 0 and run.stderr == "", (name, run.stderr)
