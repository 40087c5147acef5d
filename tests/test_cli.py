"""The runstore command line."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from runstore import Store


def runstore_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "runstore", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_upgrade_reports_the_revision(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    result = runstore_cli("upgrade", str(path))
    assert result.returncode == 0
    assert result.stdout.strip() == f"{path} is already at schema revision 0001."


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
