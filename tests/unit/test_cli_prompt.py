"""The hidden `set` prompt on a real pseudo-terminal: typed value, Ctrl-D, Ctrl-C."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals only")

SECRET = "typed_secret_value_98765"
PROMPT = b"value for HF_TOKEN: "
#: Wide hang guard: the machine is shared and busy.
DEADLINE_S = 30.0


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VAULT_", "BAO_", "AWS_", "SIMPLETUNER_"))
        and k not in ("HF_TOKEN", "REPLICATE_API_TOKEN", "CLOUD_WEBHOOK_SECRET")
        and k not in ("LINES", "COLUMNS")
    }
    env["HOME"] = str(home)
    return env


#: Run before the CLI, in the child: a new session whose controlling terminal is the pty on
#: stdin, so that /dev/tty (where getpass prompts) is the pty and Ctrl-C there is a SIGINT.
#: A wrapper rather than `preexec_fn`, which is unsafe in a process with threads. SIGINT goes
#: back to its default first: a runner started in the background by a non-interactive shell
#: inherits it ignored, and Python installs its KeyboardInterrupt handler only when it is not.
TAKE_TERMINAL = (
    "import fcntl, os, signal, sys, termios; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execv(sys.argv[1], sys.argv[1:])"
)


class Terminal:
    """A `simpletuner-secrets` process on the slave side of a pty; the test holds the master."""

    def __init__(self, home: Path, *args: str) -> None:
        master, slave = os.openpty()
        self.master = master
        self.output = b""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                TAKE_TERMINAL,
                sys.executable,
                "-m",
                "simpletuner_secrets.cli",
                *args,
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=clean_env(home),
        )
        os.close(slave)

    def read_until(self, wanted: bytes, deadline_s: float = DEADLINE_S) -> bytes:
        """Read the terminal until ``wanted`` appears (or fail after the deadline)."""
        end = time.monotonic() + deadline_s
        while wanted not in self.output:
            if time.monotonic() > end:
                pytest.fail(f"no {wanted!r} on the terminal within {deadline_s} s: {self.output!r}")
            if not self._read_some(0.2) and self.proc.poll() is not None:
                pytest.fail(f"exited {self.proc.returncode} before {wanted!r}: {self.output!r}")
        return self.output

    def _read_some(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: every slave descriptor is closed
            return False
        self.output += chunk
        return bool(chunk)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, deadline_s: float = DEADLINE_S) -> int:
        """Wait for the exit, draining the terminal; the exit code."""
        end = time.monotonic() + deadline_s
        while self.proc.poll() is None:
            if time.monotonic() > end:
                self.proc.kill()
                self.proc.wait(timeout=10)
                pytest.fail(f"still running {deadline_s} s later: {self.output!r}")
            self._read_some(0.1)
        while self._read_some(0.05):
            pass
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self.master)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path, "set", "HF_TOKEN")
    try:
        yield term
    finally:
        term.close()


def secrets_file(home: Path) -> Path:
    return home / ".simpletuner" / "secrets.json"


def test_typed_value_is_hidden_and_written(terminal: Terminal, tmp_path: Path) -> None:
    """A value typed at the prompt is stored, and never echoed back to the terminal."""
    terminal.read_until(PROMPT)
    terminal.send(SECRET.encode() + b"\n")
    assert terminal.wait() == 0, terminal.output
    assert SECRET.encode() not in terminal.output
    assert b"HF_TOKEN written to" in terminal.output
    assert json.loads(secrets_file(tmp_path).read_text()) == {"HF_TOKEN": SECRET}


def test_ctrl_d_at_the_prompt_says_no_value_and_exits_two(
    terminal: Terminal, tmp_path: Path
) -> None:
    """End of input at the prompt: "no value given; nothing written", exit 2, no traceback."""
    terminal.read_until(PROMPT)
    terminal.send(b"\x04")
    assert terminal.wait() == 2, terminal.output
    after = terminal.output.split(PROMPT, 1)[1]
    assert b"Traceback" not in terminal.output
    assert after.startswith(b"\r\n"), after  # the message starts on a fresh line
    assert b"error: no value given; nothing written" in after
    assert not secrets_file(tmp_path).exists()


def test_one_ctrl_c_at_the_prompt_exits_130_on_a_fresh_line(
    terminal: Terminal, tmp_path: Path
) -> None:
    """The first Ctrl-C ends the prompt at once with 130, the terminal moved to a new line."""
    terminal.read_until(PROMPT)
    sent = time.monotonic()
    terminal.send(b"\x03")
    code = terminal.wait(deadline_s=15)
    assert code == 130, terminal.output
    # At once: well under the 15 s guard (an ignored first Ctrl-C never ends at all).
    assert time.monotonic() - sent < 10
    after = terminal.output.split(PROMPT, 1)[1]
    assert b"Traceback" not in terminal.output and b"KeyboardInterrupt" not in terminal.output
    assert after.endswith(b"\r\n"), after
    assert not secrets_file(tmp_path).exists()
    # The terminal's echo is back on: getpass restored it before the process ended.
    attrs = termios.tcgetattr(terminal.master)
    assert attrs[3] & termios.ECHO


def test_a_bad_key_is_refused_before_the_prompt(tmp_path: Path) -> None:
    """`set ' '` is a usage error (exit 2) at once, without asking for a value."""
    term = Terminal(tmp_path, "set", " ")
    try:
        assert term.wait() == 2, term.output
        assert PROMPT not in term.output and b"value for" not in term.output
        assert b"error:" in term.output
    finally:
        term.close()
