"""Every Python snippet in the README and docs/ runs: each ```python block is executed, and
each test function it defines is called with the fixtures it names, as pytest would."""

import inspect
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def snippets():
    for doc in DOCS:
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)):
            yield pytest.param(block, id=f"{doc.name}-{i}")


@pytest.mark.parametrize("code", list(snippets()))
def test_snippet_runs(code, request):
    namespace: dict = {}
    exec(compile(code, "<snippet>", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    for f in tests:
        f(**{name: request.getfixturevalue(name) for name in inspect.signature(f).parameters})
