"""What an operator installs and configures: the Makefile, the systemd unit, .env.example.

Each test reads the files the repository ships, as an operator would use them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import Settings
from tests.conftest import ROOT

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

UNIT = ROOT / "deploy" / "kitchen-table.service"


def _env_names() -> list[str]:
    """Every setting's environment variable, as the bot reads it."""
    names = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.append(alias if isinstance(alias, str) else f"KT_{name.upper()}")
    return names


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_ctrl_c_stops_make_run_without_an_error(tmp_path: Path):
    # The bot as installed (BIN), with the install step already done (STAMP), so this runs
    # the Makefile's own `run` recipe and nothing else; in a folder of its own, so a
    # developer's .env can't turn on a platform.
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    stamp = tmp_path / "installed"
    stamp.touch()
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("KT_", "TELEGRAM_", "SLACK_"))
    }
    environment.update(
        {"KT_DATA_DIR": str(tmp_path / "data"), "KT_GUIDES_DIR": str(ROOT / "guides")}
    )
    make = subprocess.Popen(
        [
            "make",
            "--no-print-directory",
            "run",
            f"BIN={Path(sys.executable).parent}",
            f"STAMP={stamp}",
        ],
        cwd=tmp_path,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert make.stdout is not None
    while "?" not in (line := make.stdout.readline()):  # the guide's first question
        assert line, "make run stopped before the bot asked anything"

    os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _, errors = make.communicate(timeout=60)

    assert "Error 130" not in errors
    assert "***" not in errors
    assert "Traceback" not in errors


def test_env_example_and_the_readme_name_every_setting():
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in _env_names():
        assert re.search(rf"^#? ?{name}=", example, re.MULTILINE), f"{name} not in .env.example"
        assert f"`{name}`" in table, f"{name} not in the README's Configuration table"


def test_env_example_is_read_by_the_bot_as_it_stands(tmp_path: Path):
    # Copied to .env unchanged, it starts nothing it shouldn't: every line is a comment or
    # a default the settings accept.
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("KT_", "TELEGRAM_", "SLACK_"))
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot", "guides", "list", str(ROOT / "guides")],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "weekly-checkin" in done.stdout


def test_the_systemd_unit_is_hardened_and_reads_its_settings_from_a_file():
    unit = UNIT.read_text()
    for line in (
        "User=kitchen-table",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/kitchen-table",
        "EnvironmentFile=/etc/kitchen-table/env",
        "UMask=0077",
    ):
        assert re.search(rf"^{re.escape(line)}$", unit, re.MULTILINE), line


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
def test_systemd_analyze_verify_finds_nothing_wrong_with_the_unit(tmp_path: Path):
    # verify checks that ExecStart's program exists, and the targets the unit is ordered
    # against: under a --root holding a stand-in at the unit's path and the system's own
    # units, the unit is verified exactly as shipped. A mistyped key or a bad value is
    # reported on a line naming the file (with exit code 0), so any such line fails.
    system_units = Path("/usr/lib/systemd/system")
    if not (system_units / "sysinit.target").exists():
        pytest.skip("this machine has no systemd units to verify against")
    unit_text = UNIT.read_text()
    program = re.search(r"^ExecStart=(\S+)", unit_text, re.MULTILINE)
    assert program is not None
    root = tmp_path / "root"
    stand_in = root / program.group(1).lstrip("/")
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    shutil.copytree(system_units, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    shutil.copy(UNIT, units / UNIT.name)
    done = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", str(units / UNIT.name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if "kitchen-table" in line or "Unknown" in line or "Invalid" in line
    ]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed")
def test_the_caddy_example_sends_the_bots_paths_to_the_bot_and_nothing_else():
    done = subprocess.run(
        [
            "caddy",
            "adapt",
            "--config",
            str(ROOT / "deploy" / "Caddyfile"),
            "--adapter",
            "caddyfile",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    server = next(iter(config["apps"]["http"]["servers"].values()))
    text = json.dumps(server)
    assert server["listen"] == [":443"]
    assert '"host": ["bot.example.org"]' in text
    for path in ("/telegram/*", "/slack/*", "/healthz", "/console", "/console/*", "/report/*"):
        assert f'"{path}"' in text
    assert '"dial": "127.0.0.1:8080"' in text
    assert '"status_code": 404' in text


def test_the_nginx_example_sends_the_bots_paths_to_the_bot_and_nothing_else():
    """Read as nginx reads its one location for the bot (a regular expression nginx and
    Python agree on): the console's sign-in links and the public reports pass (they
    were 404 in the documented deployment), nothing else does."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text("utf-8")
    found = re.search(r"location ~ (\S+) \{\s*proxy_pass http://127\.0\.0\.1:8080;", conf)
    assert found, conf
    passes = re.compile(found.group(1))
    for path in ("/telegram/a1b2", "/slack/events", "/healthz", "/console", "/console/",
                 "/console/signin?t=x", "/report/weekly-checkin"):  # fmt: skip
        assert passes.search(path), path
    for path in ("/", "/healthz/x", "/consoles", "/reports", "/etc/passwd", "/metrics"):
        assert not passes.search(path), path
