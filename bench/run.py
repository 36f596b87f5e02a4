#!/usr/bin/env python3
"""Run every bench/*.py and print one table of their figures.

A benchmark prints lines `name<TAB>value<TAB>unit<TAB>note`; anything else it prints is
passed through to stderr. usage: bench/run.py [NAME ...]   (e.g. bench/run.py daemon)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py")
                     if p.name != "run.py" and not p.name.startswith("_"))
    if names:
        scripts = [p for p in scripts if p.stem in names]
    table = Table(title="Ronda benchmarks")
    for col in ("bench", "figure", "value", "unit", "note"):
        table.add_column(col, justify="right" if col == "value" else "left")
    failed = 0
    for script in scripts:
        started = time.monotonic()
        print(f"== {script.name}", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              cwd=HERE.parent)
        for line in proc.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                table.add_row(script.stem, parts[0], parts[1], parts[2],
                              parts[3] if len(parts) > 3 else "")
            else:
                print(line, file=sys.stderr)
        if proc.returncode:
            failed += 1
            table.add_row(script.stem, "[red]FAILED[/]", str(proc.returncode), "exit",
                          proc.stderr.strip().splitlines()[-1][:80] if proc.stderr.strip() else "")
        print(f"   {time.monotonic() - started:.0f} s", file=sys.stderr)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a log file: keep one row per line
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
