"""Run every benchmark script in ``bench/`` that supports ``--tiny``; what CI calls.

A script joins automatically by defining the module-level constant ``TINY_SUPPORTED = True``
(found by parsing the files, without importing them). Each runs in its own subprocess (and
process group, killed whole on timeout) from the repository root::

    .venv/bin/python bench/run_all.py --tiny            # CI: every script in tiny mode
    .venv/bin/python bench/run_all.py --only calibrate  # full runs of some scripts
    .venv/bin/python bench/run_all.py --tiny --json-dir /tmp/bench-json

Exits non-zero when a script fails or times out, or when no script was found.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
MARKER = "TINY_SUPPORTED"


@dataclass(frozen=True)
class Outcome:
    script: str
    returncode: int | None  # None: timed out
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def supports_tiny(path: Path) -> bool:
    """Whether the module assigns ``TINY_SUPPORTED = True`` at its top level."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return False
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == MARKER for t in targets):
            value = node.value
            return isinstance(value, ast.Constant) and value.value is True
    return False


def discover(bench_dir: Path = BENCH_DIR) -> list[Path]:
    """The benchmark scripts that support ``--tiny``, sorted by name."""
    return sorted(
        path
        for path in bench_dir.glob("*.py")
        if not path.name.startswith("_") and path.name != Path(__file__).name
        if supports_tiny(path)
    )


def stop_group(child: subprocess.Popen[bytes]) -> None:
    """Stop the script and whatever it started (its process group): TERM, then KILL."""
    for sig, grace_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):  # the script is gone; its children too
            os.killpg(child.pid, signal.SIGKILL)
        return


def run_script(script: Path, arguments: list[str], timeout_s: float) -> Outcome:
    """Run one script (output passed through) in a new process group, killed whole on timeout."""
    command = [sys.executable, str(script), *arguments]
    started = time.perf_counter()
    sys.stdout.flush()
    child = subprocess.Popen(
        command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    returncode: int | None = None
    try:
        returncode = child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(f"{script.name}: timed out after {timeout_s:.0f} s, killing it", flush=True)
    finally:
        if child.poll() is None:  # timed out, or we were interrupted
            stop_group(child)

    return Outcome(script.name, returncode, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmark scripts (CI: --tiny).")
    parser.add_argument("--tiny", action="store_true", help="pass --tiny to every script")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per script (default 300 tiny, 1800)"
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only these scripts"
    )
    parser.add_argument("--json-dir", type=Path, help="have each script write NAME.json here")
    parser.add_argument("--list", action="store_true", help="list the scripts found and exit")
    args = parser.parse_args(argv)

    scripts = discover()
    if args.only:
        wanted = {name.removesuffix(".py") for name in args.only}
        unknown = wanted - {path.stem for path in scripts}
        if unknown:
            print(f"unknown or non-tiny benchmark(s): {', '.join(sorted(unknown))}")
            return 2
        scripts = [path for path in scripts if path.stem in wanted]
    if args.list:
        for path in scripts:
            print(path.relative_to(REPO_ROOT))
        return 0
    if not scripts:
        print(f"no benchmark script defines {MARKER} = True in {BENCH_DIR}")
        return 1

    timeout_s = args.timeout if args.timeout is not None else (300.0 if args.tiny else 1800.0)
    outcomes: list[Outcome] = []
    for script in scripts:
        arguments = ["--tiny"] if args.tiny else []
        if args.json_dir is not None:
            arguments += ["--json", str((args.json_dir / f"{script.stem}.json").resolve())]
        print(f"=== {script.name} {' '.join(arguments)}", flush=True)
        outcomes.append(run_script(script, arguments, timeout_s))

    print("=== summary")
    for outcome in outcomes:
        if outcome.returncode is None:
            status = f"TIMEOUT after {timeout_s:.0f} s"
        else:
            status = "ok" if outcome.ok else f"FAILED (exit status {outcome.returncode})"
        print(f"{outcome.script:<32} {status:<28} {outcome.seconds:7.1f} s")
    failed = [outcome.script for outcome in outcomes if not outcome.ok]
    if failed:
        print(f"{len(failed)} of {len(outcomes)} benchmark(s) failed: {', '.join(failed)}")
        return 1
    print(f"all {len(outcomes)} benchmark(s) passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
