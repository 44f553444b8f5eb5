"""Loading never runs code: no eval/exec/yaml.load/trust_remote_code in the code base, and every call that can
unpickle a file (``torch.load``, ``pickle``, Lightning's and DeepSpeed's checkpoint loaders, a Trainer given a
``ckpt_path``) goes through the one reading policy, :mod:`Engineering.pickle_policy`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PATTERNS = {
    "eval": re.compile(r"(?<![\w.])eval\("),
    "exec": re.compile(r"(?<![\w.])exec\("),
    "yaml.load": re.compile(r"yaml\.(load|load_all)\((?![^)]*SafeLoader)"),
    "trust_remote_code": re.compile(r"trust_remote_code\s*=\s*True"),
}
#: (file, pattern) -> why the hit is safe
ALLOWED = {
    ("Engineering/hub/loading.py", "trust_remote_code"): "module docstring quoting what the original did; no call",
}
POLICY_MODULE = "Engineering/pickle_policy.py"
"""The only module allowed to unpickle (weights-only, or in full for a file the user vouches for)."""
UNPICKLING_CALLS = {
    "torch.load",
    "torch.jit.load",
    "torch.serialization.load",
    "torch.hub.load",
    "torch.hub.load_state_dict_from_url",
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "joblib.load",
    "dill.load",
    "dill.loads",
    "cloudpickle.load",
    "cloudpickle.loads",
}
UNPICKLING_NAMES = {
    "read_pickle",
    "load_from_checkpoint",
    "pl_load",
    "_load",
    "convert_zero_checkpoint_to_fp32_state_dict",
    "get_fp32_state_dict_from_zero_checkpoint",
    "load_state_dict_from_zero_checkpoint",
    "load_checkpoint",
}
"""Functions that unpickle whatever object they are reached through (pandas' ``read_pickle``, Lightning's
``load_from_checkpoint``/``pl_load``/``_load``, DeepSpeed's converters and ``load_checkpoint``)."""
PICKLE_MODULES = ("pickle", "_pickle", "dill", "cloudpickle", "joblib")


def _hits() -> list[tuple[str, str, int, str]]:
    hits = []
    for folder in ("Engineering", "Executors"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if code.lstrip().startswith(("``", '"', "'")):  # docstring prose
                    continue
                for name, pattern in PATTERNS.items():
                    if pattern.search(code):
                        hits.append((rel, name, lineno, line.strip()))
    return hits


def test_no_code_running_loaders_outside_the_allow_list() -> None:
    bad = [h for h in _hits() if (h[0], h[1]) not in ALLOWED]
    assert not bad, "\n".join(f"{f}:{n}: {p}: {src}" for f, p, n, src in bad)


def test_the_scanner_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = ["x = eval(s)", "yaml.load(f)", "yaml.load(f, Loader=yaml.SafeLoader)", "exec(c)"]
    found = [name for line in sample for name, pat in PATTERNS.items() if pat.search(line)]
    assert found == ["eval", "yaml.load", "exec"]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _pickling_numpy_load(node: ast.Call) -> bool:
    return _dotted(node.func).endswith(("np.load", "numpy.load")) and any(
        k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
        for k in node.keywords
    )


def unpickling_calls(source: str) -> list[tuple[int, str]]:
    """(line, what) of every call in ``source`` that can unpickle a file, found in the syntax tree (so docstrings
    and comments never count, and calls spread over several lines do)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in PICKLE_MODULES:
            found += [(node.lineno, f"from {node.module} import {a.name}") for a in node.names if "load" in a.name]
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        keywords = {k.arg for k in node.keywords}
        if name in UNPICKLING_CALLS or name.rsplit(".", 1)[-1] in UNPICKLING_NAMES:
            found.append((node.lineno, name))
        elif _pickling_numpy_load(node):
            found.append((node.lineno, f"{name}(allow_pickle=...)"))
        elif "ckpt_path" in keywords and "weights_only" not in keywords:
            found.append((node.lineno, f"{name}(ckpt_path=...) without weights_only"))
    return found


def test_every_unpickling_call_is_behind_the_policy_module() -> None:
    """Lists every call that can unpickle a file; only the policy module may make one."""
    listed = {}
    for folder in ("Engineering", "Executors"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for lineno, what in unpickling_calls(path.read_text(encoding="utf-8")):
                listed[f"{rel}:{lineno}"] = what
    outside = {where: what for where, what in listed.items() if not where.startswith(POLICY_MODULE + ":")}
    assert not outside, "unpickling outside the policy module:\n" + "\n".join(f"{w}: {c}" for w, c in outside.items())
    assert sorted(set(listed.values())) == ["torch.load"]  # the policy's own torch.load calls, nothing else


SAMPLE = '''
import torch, pickle
from pickle import loads
"""torch.load(p) in a docstring is prose"""
torch.load(p, weights_only=True)
pickle.load(f)
np.load(f, allow_pickle=True)
np.load(f, allow_pickle=False)
pd.read_pickle(p)
Model.load_from_checkpoint(p)
convert_zero_checkpoint_to_fp32_state_dict(a, b)
trainer.fit(m,
            ckpt_path=c)
trainer.fit(m, ckpt_path=c, weights_only=True)
'''


def test_the_unpickling_scanner_finds_what_it_looks_for() -> None:
    assert sorted(unpickling_calls(SAMPLE)) == [
        (3, "from pickle import loads"),
        (5, "torch.load"),
        (6, "pickle.load"),
        (7, "np.load(allow_pickle=...)"),
        (9, "pd.read_pickle"),
        (10, "Model.load_from_checkpoint"),
        (11, "convert_zero_checkpoint_to_fp32_state_dict"),
        (12, "trainer.fit(ckpt_path=...) without weights_only"),
    ]


def test_subject_ids_cannot_name_files_outside_the_output_folder(tmp_path: Path) -> None:
    from Engineering.outputs.panels import panel_name, write_recon_panel

    out = tmp_path / "out" / "panels"
    frames = np.zeros((2, 8, 8), dtype=np.float32)
    for key in ("../../x/1/2/s", "/etc/passwd/1/2/s", "..\\..\\x/1/2/s", "a/../../../b"):
        path = write_recon_panel(out, key, frames, frames)
        assert path.resolve().parent == out.resolve() and "/" not in panel_name(key)
    assert sorted(p.parent for p in tmp_path.rglob("*.png")) == [out] * 4
