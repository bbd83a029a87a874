"""The package's modules import each other in one direction only.

Each module may import only modules below it in :data:`STACK` (read from the source with
``ast``, so imports under ``TYPE_CHECKING`` and inside functions count too). A new module
must be given its place here; docs/architecture.md draws the same stack.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "trio_fuse_uring"
SRC = Path(__file__).resolve().parent.parent / PACKAGE

# Bottom first. A unit is a top-level module or subpackage of the package; "" is the
# package itself (__init__.py, the public API).
STACK = [
    "_ring_cffi",  # the compiled C side (built by _ring_build.py)
    "_ring_build",  # cffi build script, run by setup.py
    "_abi",  # kernel ABI: constants and struct layouts
    "_backing",  # backing files: the C table of fh -> fd, kernel passthrough ids
    "_types",  # the public value types handlers take and return
    "_dirscan",  # a directory read into a DirListing in C
    "_options",  # mount options: parsing and validation
    "_deadlines",  # request timeouts: the kernel's deadline and the framework's margin
    "ops",  # what handler authors import: Operations and the value types
    "_protocol",  # sans-I/O: bytes <-> typed requests and replies
    "_dispatch",  # a request meets the user's handler
    "_uring_support",  # is FUSE-over-io-uring usable here?
    "_mountlib",  # mount(2) / fusermount3 / unmount
    "_watchdog",  # the auto_unmount process
    "_devfuse",  # transport: /dev/fuse
    "_ring",  # transport: FUSE-over-io-uring
    "_session",  # INIT, the transport decision, mount() / run() / serve()
    "_doctor",  # python -m trio_fuse_uring doctor: what this machine allows
    "_asyncio_bridge",  # trio as a guest of asyncio; asyncio handlers as tasks
    "",  # the public API
    "asyncio",  # public: mount() inside asyncio programs
    "paths",  # public: the path API, a high-level layer on the public inode API
    "compat",  # public: other libraries' APIs (pyfuse3; fusepy/mfusepy on paths)
    "__main__",  # the command line
]


def _unit(module: str) -> str:
    """The STACK entry a dotted module name within the package belongs to."""
    assert module == PACKAGE or module.startswith(PACKAGE + ".")
    rest = module[len(PACKAGE) + 1 :]
    return rest.split(".", 1)[0]


def _module_name(path: Path) -> tuple[str, str]:
    """(the module's dotted name, the package its relative imports start from)."""
    parts = [PACKAGE, *path.relative_to(SRC).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, dotted target) for every import of the package's own modules in ``source``,
    a module whose relative imports start from ``package``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                start = ".".join(base + ([node.module] if node.module else []))
            else:
                start = node.module or ""
            if node.module is None:
                # ``from . import _abi``: each name is a module of that package.
                found += [(node.lineno, f"{start}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, start))
    return [(n, t) for n, t in found if t == PACKAGE or t.startswith(PACKAGE + ".")]


def _upward_imports(me: str, package: str, source: str) -> list[tuple[int, str]]:
    """The imports in ``source`` (of unit ``me``) that do not go down the stack."""
    level = STACK.index(me)
    wrong = []
    for line, target in _imports(source, package):
        unit = _unit(target)
        if unit != me and (unit not in STACK or STACK.index(unit) >= level):
            wrong.append((line, target))
    return wrong


SOURCES = sorted(SRC.rglob("*.py"))


def test_every_module_has_a_place() -> None:
    units = {_unit(_module_name(p)[0]) for p in SOURCES}
    missing = units - set(STACK)
    assert not missing, f"give {sorted(missing)} a place in STACK (tests/test_layers.py)"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_down_the_stack(path: Path) -> None:
    module, package = _module_name(path)
    wrong = _upward_imports(_unit(module), package, path.read_text())
    assert not wrong, (
        "imports must go down the stack in tests/test_layers.py (move the shared thing "
        "lower instead):\n"
        + "\n".join(f"{path.relative_to(SRC.parent)}:{line} imports {t}" for line, t in wrong)
    )


@pytest.mark.parametrize(
    ("me", "package", "source", "expected"),
    [
        # ops reaching into a transport, in every spelling
        ("ops", "trio_fuse_uring.ops", "from .._ring import X", ["trio_fuse_uring._ring"]),
        ("ops", "trio_fuse_uring.ops", "from .. import _session", ["trio_fuse_uring._session"]),
        ("ops", "trio_fuse_uring.ops", "import trio_fuse_uring._dispatch", ["trio_fuse_uring._dispatch"]),
        # the public API, from inside the package
        ("_protocol", "trio_fuse_uring._protocol", "from .. import FUSEError", ["trio_fuse_uring.FUSEError"]),
        # hidden imports count too
        ("_abi", "trio_fuse_uring", "def f():\n    from ._types import Lock", ["trio_fuse_uring._types"]),
        # allowed: downwards, within a subpackage, outside the package
        ("_dispatch", "trio_fuse_uring", "from . import _abi\nfrom ._protocol import Read", []),
        ("_protocol", "trio_fuse_uring._protocol", "from ._decode import x", []),
        ("_abi", "trio_fuse_uring", "import struct\nimport trio", []),
    ],
)  # fmt: skip
def test_the_checker(me: str, package: str, source: str, expected: list[str]) -> None:
    assert [t for _, t in _upward_imports(me, package, source)] == expected


def test_the_architecture_page_draws_this_stack() -> None:
    page = (SRC.parent / "docs" / "architecture.md").read_text()
    section = page.split("## How the modules import each other", 1)[1]
    drawing = section.split("```", 2)[1]
    drawn = [line.split()[0] for line in drawing.strip().splitlines()]
    names = {
        "": "__init__.py", "_protocol": "_protocol/", "ops": "ops/", "paths": "paths/",
        "compat": "compat/",
    }  # fmt: skip
    expected = [names.get(u, u + ".py") for u in reversed(STACK) if u != "_ring_cffi"]
    assert drawn == expected, "docs/architecture.md's module stack differs from STACK"


def test_tests_import_helpers_not_conftest() -> None:
    # conftest.py holds fixtures; pytest discourages importing it as a module.
    offenders = []
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [node.module] if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names] if isinstance(node, ast.Import)
                else []
            )  # fmt: skip
            if "conftest" in names:
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, "import test helpers from tests/helpers.py: " + ", ".join(offenders)
