"""Fuzzing helpers every codec's fuzz test uses: a valid frame, damaged a little."""

from __future__ import annotations

from hypothesis import strategies as st


def mutate(frame: bytes, data: st.DataObject) -> bytes:
    """Flip, insert, delete or truncate a few bytes."""
    buf = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            buf.insert(at, data.draw(st.integers(0, 255)))
        elif op == "delete" and buf:
            del buf[at]
        elif op == "truncate":
            del buf[at:]
    return bytes(buf)
