"""The README's code blocks, run verbatim through the real kernel.

Every ``python`` block runs, in order, from one directory where each block that starts
with a ``# name.py`` comment is saved under that name (so later blocks can import it). A
block that calls ``tfu.run(`` serves until stopped: once it has mounted, every file in
the mount is read, then it gets Ctrl-C. The others must finish with exit status 0. None
may leave a mount behind.

Of the shell blocks, the first set-up command (bootstrap, then memfs in the foreground)
runs here too; the second (bootstrap, then this test suite) is what CI runs, and the
wheel commands are tested in test_packaging.py.
"""

from __future__ import annotations

import sys

from helpers import REPO, require
from markdown_blocks import Step, code_blocks, file_name, run_steps

README = (REPO / "README.md").read_text()


def test_python_blocks_run_verbatim() -> None:
    require("devfuse")
    blocks = code_blocks(README, "python")
    assert blocks, "the README has no python blocks"
    files: dict[str, str] = {}
    steps = []
    for i, block in enumerate(blocks):
        name = file_name(block) or f"readme_block_{i}.py"
        files[name] = block
        steps.append(Step([sys.executable, name], daemon="tfu.run(" in block))
    outcomes = run_steps(steps, files)
    for block, outcome in zip(blocks, outcomes, strict=True):
        where = f"README block starting {block.splitlines()[0]!r}:\n{outcome.output}"
        assert outcome.returncode == 0, where
        if "tfu.run(" in block:
            assert outcome.mounted is not None, where
            assert outcome.then_returncode == 0, outcome.then_output
    # The complete filesystem serves its file; the embedded one reads it.
    assert "hello: Hello, world!" in outcomes[0].then_output, outcomes[0]
    assert "Hello, world!" in outcomes[1].output, outcomes[1]


def test_memfs_set_up_command() -> None:
    require("devfuse")
    (setup, *_) = [b for b in code_blocks(README, "sh") if "examples/memfs.py" in b]
    outcomes = run_steps(
        [Step(["bash", "-ec", setup], daemon=True, cwd=str(REPO),
              then=["echo hi > /tmp/memfs/x", "cat /tmp/memfs/x", "rm /tmp/memfs/x"])],
        files={},
    )  # fmt: skip
    (memfs,) = outcomes
    assert memfs.mounted == "/tmp/memfs", memfs
    assert memfs.then_returncode == 0 and memfs.then_output == "hi\n", memfs
    assert memfs.returncode == 0, memfs.output
    # bootstrap: one progress line per step
    steps = [
        line.split()[1] for line in memfs.output.splitlines() if line.startswith("bootstrap: ")
    ]
    assert steps == ["1/5", "2/5", "3/5", "4/5", "5/5", "ready"], memfs.output
