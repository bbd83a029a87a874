"""memfs's POSIX ACL helpers as properties (the through-the-kernel tests compare memfs
with tmpfs in test_memfs_vs_tmpfs.py and test_memfs_differential.py)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from memfs import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_USER,
    ACL_USER_OBJ,
    acl_bytes,
    acl_chmod,
    acl_create,
    acl_is_extended,
    acl_mode,
    parse_acl,
)

import trio_fuse_uring as tfu

perm = st.integers(0, 7)
ids = st.lists(st.integers(0, 2**32 - 2), max_size=4, unique=True).map(sorted)
U = 0xFFFFFFFF


@st.composite
def valid_acls(draw: st.DrawFn) -> list[list[int]]:
    users, groups = draw(ids), draw(ids)
    acl = [[ACL_USER_OBJ, draw(perm), U]]
    acl += [[ACL_USER, draw(perm), u] for u in users]
    acl += [[ACL_GROUP_OBJ, draw(perm), U]]
    acl += [[ACL_GROUP, draw(perm), g] for g in groups]
    if users or groups or draw(st.booleans()):
        acl += [[ACL_MASK, draw(perm), U]]
    return [*acl, [ACL_OTHER, draw(perm), U]]


@given(valid_acls())
def test_valid_acls_round_trip(acl: list[list[int]]) -> None:
    assert parse_acl(acl_bytes(acl)) == acl


@given(valid_acls(), st.integers(0, 0o777))
def test_chmod_then_mode_gives_the_mode(acl: list[list[int]], mode: int) -> None:
    acl_chmod(acl, mode)
    assert acl_mode(acl) == mode


@given(valid_acls(), st.integers(0, 0o7777))
def test_create_masks_both_ways(default: list[list[int]], mode: int) -> None:
    acl, new_mode = acl_create(default, mode)
    assert new_mode & ~0o777 == mode & ~0o777  # set-id and sticky bits untouched
    assert new_mode & 0o777 == mode & 0o777 & acl_mode(default)
    assert acl_mode(acl) == new_mode & 0o777
    assert acl_is_extended(acl) == acl_is_extended(default)


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_einval(value: bytes) -> None:
    try:
        acl = parse_acl(value)
    except tfu.FUSEError as exc:
        assert exc.errno == 22
    else:
        assert acl_bytes(acl) == value


@pytest.mark.parametrize(
    "entries",
    [
        [(ACL_USER_OBJ, 7), (ACL_USER, 7), (ACL_GROUP_OBJ, 5), (ACL_OTHER, 5)],  # no mask
        [(ACL_GROUP_OBJ, 5), (ACL_USER_OBJ, 7), (ACL_OTHER, 5)],  # out of order
        [(ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5), (ACL_OTHER, 5), (ACL_OTHER, 5)],  # twice
        [(ACL_USER_OBJ, 8), (ACL_GROUP_OBJ, 5), (ACL_OTHER, 5)],  # perm > 7
        [(ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5)],  # no other
    ],
)
def test_invalid_acls(entries: list[tuple[int, int]]) -> None:
    value = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, 1) for t, p in entries)
    with pytest.raises(tfu.FUSEError):
        parse_acl(value)
