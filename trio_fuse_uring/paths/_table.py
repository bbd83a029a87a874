"""The node table: which path each kernel node number stands for.

The kernel names files by node numbers; a path filesystem names them by paths. Like
libfuse's high-level layer, the table gives every name the kernel looked up a node of
its own (so two hard links are two nodes), keeps the node while the kernel holds lookup
references or the file is open, and follows renames so an open file or a directory
keeps working under its new name. Pure bookkeeping: no I/O, no awaits.
"""

from __future__ import annotations

from collections.abc import Iterator

ROOT_ID = 1
HIDDEN_PREFIX = ".fuse_hidden"


class Node:
    """One name the kernel knows: a child ``name`` of ``parent`` (None once detached)."""

    __slots__ = ("hidden", "id", "ino", "name", "nlookup", "nopen", "parent")

    def __init__(self, node_id: int, parent: Node | None, name: str) -> None:
        self.id = node_id
        self.parent = parent
        self.name = name
        self.nlookup = 0
        self.nopen = 0
        self.hidden = False  # renamed to a .fuse_hidden name while open, after an unlink
        self.ino = node_id  # what stat last showed (the filesystem's own with use_ino)

    def __repr__(self) -> str:
        return f"Node({self.id}, {self.name!r}, nlookup={self.nlookup}, nopen={self.nopen})"


class NodeTable:
    """Node numbers ⇄ (parent, name), with the kernel's lookup counts and open counts."""

    def __init__(self) -> None:
        self.root = Node(ROOT_ID, None, "")
        self.root.nlookup = 1  # the kernel's reference to the root is never forgotten
        self._by_id: dict[int, Node] = {ROOT_ID: self.root}
        self._by_name: dict[tuple[int, str], Node] = {}
        self._next_id = ROOT_ID + 1
        self._hidden_counter = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, node_id: int) -> Node | None:
        return self._by_id.get(node_id)

    def child(self, parent: Node, name: str) -> Node | None:
        """The node of ``name`` in ``parent``, if the kernel knows one."""
        return self._by_name.get((parent.id, name))

    def nodes(self) -> Iterator[Node]:
        return iter(self._by_id.values())

    def path(self, node: Node) -> str | None:
        """The node's path from the root (``"/"`` for the root); None once detached."""
        if node is self.root:
            return "/"
        parts = []
        n: Node | None = node
        while n is not None and n is not self.root:
            parts.append(n.name)
            n = n.parent
        if n is None:
            return None  # a node on the way up was unlinked or removed
        parts.append("")
        return "/".join(reversed(parts))

    def child_path(self, parent: Node, name: str) -> str | None:
        base = self.path(parent)
        if base is None:
            return None
        return base + name if base == "/" else f"{base}/{name}"

    def find(self, path: str) -> Node | None:
        """The node a path names, walking known names only (None if the kernel has none)."""
        node: Node | None = self.root
        for part in path.split("/"):
            if not part:
                continue
            assert node is not None
            node = self._by_name.get((node.id, part))
            if node is None:
                return None
        return node

    def attach(self, parent: Node, name: str) -> Node:
        """The node of ``name`` in ``parent``, created (with no references) if missing."""
        node = self._by_name.get((parent.id, name))
        if node is None:
            node = Node(self._next_id, parent, name)
            self._next_id += 1
            self._by_id[node.id] = node
            self._by_name[(parent.id, name)] = node
        return node

    def detach(self, parent: Node, name: str) -> Node | None:
        """The name is gone (unlink, rmdir, replaced by a rename): its node, if any, keeps
        serving open files and the kernel's references but has no path any more."""
        node = self._by_name.pop((parent.id, name), None)
        if node is not None:
            node.parent = None
            self.drop_if_unused(node)
        return node

    def move(self, parent: Node, name: str, new_parent: Node, new_name: str) -> None:
        """``rename``: the node of the old name (if known) takes the new one; a node
        that had the new name is detached."""
        if parent is new_parent and name == new_name:
            return
        node = self._by_name.pop((parent.id, name), None)
        self.detach(new_parent, new_name)
        if node is not None:
            node.parent, node.name = new_parent, new_name
            self._by_name[(new_parent.id, new_name)] = node

    def exchange(self, parent: Node, name: str, new_parent: Node, new_name: str) -> None:
        """``rename`` with RENAME_EXCHANGE: the two names swap their nodes."""
        a = self._by_name.pop((parent.id, name), None)
        b = self._by_name.pop((new_parent.id, new_name), None)
        if a is not None:
            a.parent, a.name = new_parent, new_name
            self._by_name[(new_parent.id, new_name)] = a
        if b is not None:
            b.parent, b.name = parent, name
            self._by_name[(parent.id, name)] = b

    def hidden_name(self, node: Node) -> str:
        """A fresh name to keep an unlinked open file under until its last release."""
        self._hidden_counter += 1
        return f"{HIDDEN_PREFIX}{node.id:08x}{self._hidden_counter:08x}"

    def forget(self, node: Node, count: int) -> None:
        node.nlookup = max(0, node.nlookup - count)
        self.drop_if_unused(node)

    def drop_if_unused(self, node: Node) -> None:
        """Forget a node nobody references: no kernel lookup, no open file.

        A detached node with no references is gone for good; an attached one only
        leaves the table (a later lookup of its name makes a new node).
        """
        if node.nlookup or node.nopen or node is self.root:
            return
        if self._by_id.get(node.id) is node:
            del self._by_id[node.id]
        if node.parent is not None and self._by_name.get((node.parent.id, node.name)) is node:
            del self._by_name[(node.parent.id, node.name)]
            node.parent = None
