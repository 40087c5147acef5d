"""The runstore command line."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import shutil
from pathlib import Path

from runstore import Store
from runstore.schema import SCHEMA_REVISION


def runstore_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "runstore", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_upgrade_reports_the_revision(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    result = runstore_cli("upgrade", str(path))
    assert result.returncode == 0
    assert result.stdout.strip() == f"{path} is already at schema revision {SCHEMA_REVISION}."


def test_upgrade_brings_an_older_store_to_the_current_schema(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "store-0001"
    shutil.copytree(fixture, tmp_path / "old")
    path = tmp_path / "old" / "_res" / "fixture.db"
    result = runstore_cli("upgrade", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{path} upgraded from schema revision 0001 to {SCHEMA_REVISION}.")


def test_upgrade_of_a_newer_store_fails_with_the_fix_and_no_traceback(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    result = runstore_cli("upgrade", str(path))
    assert result.returncode == 1
    assert "newer than this runstore knows" in result.stderr
    assert "pip install -U runstore" in result.stderr and "Traceback" not in result.stderr


def test_help_lists_the_commands():
    result = runstore_cli("--help")
    assert result.returncode == 0 and "upgrade" in result.stdout
