"""Mechanical layering check: the decision core (autoscaler.policy) and the serving model stay pure,
and the product path (the controller and its adapters) never reaches the sandbox, the demo or the replay.

Fails if any module of a guarded package imports a module its rule forbids, directly or through another
autoscaler module. Run as ``python -m autoscaler.tools.check_layers`` (part of ``make lint``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PURE = ("autoscaler.policy", "autoscaler.serving")
FORBIDDEN = (
    "asyncio", "aiohttp", "kubernetes_asyncio", "kubernetes", "requests", "socket", "subprocess",
    "prometheus_api_client", "prometheus_client", "urllib", "http", "time", "threading",
    "autoscaler.kube", "autoscaler.metrics", "autoscaler.controller", "autoscaler.sandbox",
    "autoscaler.commands", "autoscaler.cli",
)
PRODUCT = ("autoscaler.controller", "autoscaler.activator", "autoscaler.kube", "autoscaler.metrics", "autoscaler.observe",
           "autoscaler.statestore", "autoscaler.telemetry", "autoscaler.config")
TEST_RIGS = ("autoscaler.sandbox", "autoscaler.demo", "autoscaler.replay")
RULES = ((PURE, FORBIDDEN), (PRODUCT, TEST_RIGS))


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            base = module_name(path).split(".")
            if path.name != "__init__.py":
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            found.append(".".join([*base, node.module] if node.module else base))
    return found


def violations() -> list[str]:
    graph = {module_name(p): imports_of(p) for p in ROOT.rglob("*.py")}
    bad: list[str] = []
    for guarded, forbidden in RULES:
        for mod in sorted(graph):
            if not any(mod == g or mod.startswith(g + ".") for g in guarded):
                continue
            seen: set[str] = set()
            stack = [(mod, [mod])]
            while stack:
                cur, chain = stack.pop()
                for imp in graph.get(cur, []):
                    if any(imp == f or imp.startswith(f + ".") for f in forbidden):
                        bad.append(f"{mod}: imports {imp} via {' -> '.join(chain)}")
                    elif imp.startswith("autoscaler") and imp not in seen:
                        seen.add(imp)
                        stack.append((imp, [*chain, imp]))
    return bad


def main() -> int:
    bad = violations()
    for line in bad:
        print(f"layer violation: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
