"""``autoscaler decide [FILE|-]``: one JSON snapshot in, one JSON decision out.

A what-if tool for users and the contract our acceptance tests use (docs/decide.md). Invalid input
exits 2 with a message naming the bad field, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from autoscaler.policy import decide
from autoscaler.policy.snapshot_json import SnapshotError, decision_to_json, parse_snapshot


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", default=["-"], metavar="FILE|-",
                   help="snapshot JSON file(s); '-' (default) reads standard input")
    p.add_argument("--compact", action="store_true", help="one line of JSON per decision")


def decide_document(doc: Any) -> dict[str, Any]:
    snapshot, state = parse_snapshot(doc)
    return decision_to_json(decide(snapshot, state), snapshot)


def run(args: argparse.Namespace) -> int:
    rc = 0
    for path in args.files:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            print(f"autoscaler decide: cannot read {path}: {exc.strerror}", file=sys.stderr)
            rc = 2
            continue
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            print(f"autoscaler decide: {path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                  file=sys.stderr)
            rc = 2
            continue
        try:
            out = decide_document(doc)
        except SnapshotError as exc:
            print(f"autoscaler decide: {path}: {exc}", file=sys.stderr)
            rc = 2
            continue
        print(json.dumps(out, indent=None if args.compact else 2))
    return rc
