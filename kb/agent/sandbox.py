"""The ``python`` tool's sandbox: run a snippet in a separate, limited, throw-away Python process.

Off by default (``agent.python_tool``). Each call starts a new interpreter:

* ``python -I -S`` — isolated mode (no ``PYTHON*`` variables, no user site, no script folder on
  ``sys.path``) and no ``site`` (no site-packages: the standard library only);
* a **clean environment**: the child's environment is empty, nothing of the app's (API keys,
  tokens, ``KBQA_*``) is inherited;
* **limits** set in the child before the snippet runs (soft = hard, so it cannot raise them back
  unless it is privileged, which it is not — below): ``RLIMIT_CPU`` (CPU seconds; SIGXCPU, then
  SIGKILL), ``RLIMIT_AS`` (address space: allocations fail with ``MemoryError``), ``RLIMIT_FSIZE``
  (largest file it may write, its captured output included), ``RLIMIT_CORE`` = 0, and a **wall
  clock**: the parent kills the whole process group after ``wall_s`` (``sleep`` or a blocked read
  use no CPU time);
* **cwd** is a fresh temporary folder, deleted afterwards; stdout/stderr go to files there and
  only the first ``output_chars`` are read back;
* **no network** when unprivileged user namespaces are available: the child runs under
  ``unshare --user --map-root-user --net`` in a network namespace of its own with only a (down)
  loopback — ``connect`` fails with "Network is unreachable". Where ``unshare`` is missing or not
  permitted the snippet **does have network access**; :attr:`SandboxResult.network_isolated`
  says which, and the tool's output tells the model and the user;
* started as root outside a namespace, the child drops to uid/gid 65534 (nobody) before the
  snippet runs, so it cannot raise its limits.

What this does **not** protect against (docs/USER_GUIDE.md repeats it): reading any file the
user (or ``nobody``) can read — there is no filesystem isolation, a snippet can read your
documents; writing files the user can write (each at most ``RLIMIT_FSIZE``); forking more
processes (they inherit the limits and are killed with the group on timeout, but a double-forked
daemon that leaves the group survives the wall clock — its CPU limit still ends it); using the
CPU for ``cpu_s`` seconds; side channels, kernel bugs. It is a guard against a model's runaway or
careless code, not a security boundary against a determined attacker: keep the tool off when
untrusted people can write the questions.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SandboxLimits", "SandboxResult", "network_isolation_available", "run_python"]

_BOOTSTRAP = """
import os, resource, sys
cpu, mem, fsize = {cpu}, {mem}, {fsize}
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if os.getuid() == 0:
    try:
        os.setgroups([]); os.setgid(65534); os.setuid(65534)
    except OSError:
        pass  # root inside a user namespace: not privileged outside it
code = open("snippet.py", encoding="utf-8").read()
del os, resource, cpu, mem, fsize
exec(compile(code, "snippet.py", "exec"), {{"__name__": "__main__"}})
"""


@dataclass(frozen=True)
class SandboxLimits:
    """The limits of one run (``agent.python_*`` settings)."""

    cpu_s: int = 5
    memory_mb: int = 256
    wall_s: float = 10.0
    file_mb: int = 1
    output_chars: int = 2000


@dataclass(frozen=True)
class SandboxResult:
    """What a run printed and how it ended. ``killed`` names the limit that ended it, if one did."""

    stdout: str
    stderr: str
    returncode: int | None
    killed: str | None
    network_isolated: bool
    elapsed_ms: float

    def summary(self) -> str:
        """The observation the model sees: output, then how it ended when it did not end well."""
        parts = []
        if self.stdout.strip():
            parts.append(self.stdout.rstrip())
        if self.stderr.strip():
            parts.append("stderr:\n" + self.stderr.rstrip())
        if self.killed:
            parts.append(f"[killed: {self.killed} limit]")
        elif self.returncode not in (0, None):
            parts.append(f"[exit status {self.returncode}]")
        if not parts:
            parts.append("(no output; use print() to show a result)")
        return "\n".join(parts)


def _unshare_prefix() -> list[str]:
    exe = shutil.which("unshare")
    return [exe, "--user", "--map-root-user", "--net"] if exe else []


def network_isolation_available() -> bool:
    """Whether ``unshare --user --map-root-user --net`` works here (probed by running ``true``)."""
    prefix = _unshare_prefix()
    true = shutil.which("true")
    if not prefix or not true:
        return False
    try:
        done = subprocess.run([*prefix, true], env={}, capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _read(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(limit * 4)
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "…"


def run_python(
    code: str, limits: SandboxLimits | None = None, *, isolate_network: bool = True
) -> SandboxResult:
    """Run ``code`` in a new limited interpreter (see the module docstring); never raises for the
    snippet's own failures — they are in the result."""
    limits = limits or SandboxLimits()
    isolated = isolate_network and network_isolation_available()
    bootstrap = _BOOTSTRAP.format(
        cpu=int(limits.cpu_s), mem=int(limits.memory_mb) << 20, fsize=int(limits.file_mb) << 20
    )
    command = [*(_unshare_prefix() if isolated else []), sys.executable, "-I", "-S", "-c", bootstrap]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kbqa-sandbox-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o777)  # the child may run as nobody
        (folder / "snippet.py").write_text(code, encoding="utf-8")
        out_path, err_path = folder / "stdout.txt", folder / "stderr.txt"
        killed: str | None = None
        with out_path.open("wb") as out, err_path.open("wb") as err:
            os.chmod(out_path, 0o666)
            os.chmod(err_path, 0o666)
            proc = subprocess.Popen(
                command,
                cwd=folder,
                env={},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
            try:
                returncode: int | None = proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                killed = "wall-clock"
                _kill_group(proc)
                returncode = proc.wait()
        stdout = _read(out_path, limits.output_chars)
        stderr = _read(err_path, limits.output_chars)
    if killed is None and returncode is not None and returncode < 0:
        sig = -returncode
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            killed = "CPU-time"
        elif sig == signal.SIGXFSZ:
            killed = "file-size"
    if killed is None and "MemoryError" in stderr:
        killed = "memory"
    return SandboxResult(
        stdout=stdout,
        stderr=stderr,
        returncode=returncode,
        killed=killed,
        network_isolated=isolated,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
