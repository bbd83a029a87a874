"""The path layer's node table, without a kernel: unit and property tests.

The model is a plain set of paths the kernel knows; after any sequence of lookups,
renames, exchanges, unlinks, opens, releases and forgets, the table must name every
attached node by the path the model says, and find every such path.
"""

from __future__ import annotations

import inspect

from hypothesis import given, settings
from hypothesis import strategies as st

import trio_fuse_uring.paths as paths
from trio_fuse_uring.paths._table import ROOT_ID, NodeTable

NAMES = ["a", "b", "c"]


def test_paths_follow_renames_of_directories() -> None:
    t = NodeTable()
    d = t.attach(t.root, "d")
    f = t.attach(d, "f")
    assert t.path(f) == "/d/f"
    t.move(t.root, "d", t.root, "e")
    assert t.path(f) == "/e/f" and t.find("/e/f") is f and t.find("/d/f") is None


def test_detached_nodes_have_no_path_and_leave_when_unused() -> None:
    t = NodeTable()
    f = t.attach(t.root, "f")
    f.nlookup, f.nopen = 1, 1
    t.detach(t.root, "f")
    assert t.path(f) is None and t.get(f.id) is f
    f.nopen = 0
    t.forget(f, 1)
    assert t.get(f.id) is None and len(t) == 1


def test_a_rename_over_a_known_name_detaches_it() -> None:
    t = NodeTable()
    a, b = t.attach(t.root, "a"), t.attach(t.root, "b")
    b.nlookup = 1
    t.move(t.root, "a", t.root, "b")
    assert t.child(t.root, "b") is a and t.path(b) is None and t.get(b.id) is b


def test_the_root_is_never_dropped() -> None:
    t = NodeTable()
    t.forget(t.root, 1 << 40)
    assert t.get(ROOT_ID) is t.root and t.path(t.root) == "/"


op = st.one_of(
    st.tuples(st.just("lookup"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("rename"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("exchange"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("unlink"), st.sampled_from(NAMES), st.just("")),
    st.tuples(st.just("open"), st.sampled_from(NAMES), st.just("")),
    st.tuples(st.just("release"), st.sampled_from(NAMES), st.just("")),
    st.tuples(st.just("forget"), st.sampled_from(NAMES), st.just("")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=40))
def test_table_matches_a_model(ops: list[tuple[str, str, str]]) -> None:
    t = NodeTable()
    d = t.attach(t.root, "dir")  # two directories, names move between them
    d.nlookup = 1
    dirs = {"/": t.root, "/dir/": d}
    model: dict[str, int] = {}  # path -> node id, for names the kernel knows
    live: dict[int, object] = {}  # node id -> node, for nodes that must stay
    for kind, x, y in ops:
        src = ("/" if len(x) % 2 else "/dir/") + x
        dst = ("/dir/" if len(y) % 2 else "/") + y
        sp, sn = dirs[src[: src.rindex("/") + 1]], x
        dp, dn = dirs[dst[: dst.rindex("/") + 1]], y
        node = t.child(sp, sn)
        if kind == "lookup":
            n = t.attach(sp, sn)
            n.nlookup += 1
            model[src] = n.id
            live[n.id] = n
        elif kind == "rename" and src != dst:
            t.move(sp, sn, dp, dn)
            moved = model.pop(src, None)
            model.pop(dst, None)
            if moved is not None:
                model[dst] = moved
        elif kind == "exchange" and src != dst:
            t.exchange(sp, sn, dp, dn)
            a, b = model.pop(src, None), model.pop(dst, None)
            if a is not None:
                model[dst] = a
            if b is not None:
                model[src] = b
        elif kind == "unlink":
            t.detach(sp, sn)
            model.pop(src, None)
        elif kind == "open" and node is not None:
            node.nopen += 1
        elif kind == "release" and node is not None and node.nopen:
            node.nopen -= 1
            t.drop_if_unused(node)
        elif kind == "forget" and node is not None and node.nlookup:
            t.forget(node, 1)
        # Nodes nobody references leave; everything else keeps its id.
        for nid, n in list(live.items()):
            if not (n.nlookup or n.nopen):  # type: ignore[attr-defined]
                live.pop(nid)
                model = {p: i for p, i in model.items() if i != nid}
        for path, nid in model.items():
            n = t.get(nid)
            assert n is not None, (path, nid)
            assert t.path(n) == path
            assert t.find(path) is n
        for nid in live:
            assert t.get(nid) is live[nid]


def test_public_names_are_documented() -> None:
    for name in paths.__all__:
        obj = getattr(paths, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
            assert obj.__module__ == "trio_fuse_uring.paths", (name, obj.__module__)
