"""Code-health numbers over Engineering/ and Executors/ (run from the repository root).

- longest function: the function or method with most lines (``end_lineno - lineno + 1``, decorators excluded);
- functions over 40 lines: how many functions/methods span more than 40 lines;
- Any share: of the public functions/methods (name not starting with ``_``, dunders excluded) the share whose
  signature (any parameter or the return annotation) mentions ``Any``;
- ``type: ignore`` and ``noqa`` lines: source lines containing those comments;
- ``hp.get``/``getattr(hp`` calls outside Engineering/configuration (including the ``hparams`` spellings).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOTS = ("Engineering", "Executors")
HP_ACCESS = re.compile(r"\b(hp|hparams)\.get\(|getattr\((self\.)?(hp|hparams)\b")


def _mentions_any(node: ast.AST | None) -> bool:
    if node is None:
        return False
    return any(
        (isinstance(n, ast.Name) and n.id == "Any") or (isinstance(n, ast.Attribute) and n.attr == "Any")
        for n in ast.walk(node)
    ) or (isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(r"\bAny\b", node.value) is not None)


def _signature_has_any(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    args = fn.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return any(p is not None and _mentions_any(p.annotation) for p in params) or _mentions_any(fn.returns)


def main(root: Path) -> None:
    lengths: list[tuple[int, str]] = []
    public = with_any = ignores = noqa = hp_calls = 0
    for top in ROOTS:
        for path in sorted((root / top).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            rel = path.relative_to(root).as_posix()
            for line in text.splitlines():
                ignores += "type: ignore" in line
                noqa += "noqa" in line
                if not rel.startswith("Engineering/configuration/"):
                    hp_calls += len(HP_ACCESS.findall(line))
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lengths.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.lineno} {node.name}"))
                    if not node.name.startswith("_"):
                        public += 1
                        with_any += _signature_has_any(node)
    lengths.sort(reverse=True)
    print(f"functions: {len(lengths)}")
    print(f"longest function: {lengths[0][0]} lines ({lengths[0][1]})")
    print(f"functions over 40 lines: {sum(n > 40 for n, _ in lengths)}")
    print(f"public signatures with Any: {with_any}/{public} = {with_any / max(public, 1):.1%}")
    print(f"'type: ignore' lines: {ignores}")
    print(f"'noqa' lines: {noqa}")
    print(f"hp.get/getattr(hp calls outside Engineering/configuration: {hp_calls}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
