"""MQTT topic names of the device and team interfaces (PROTOCOLS.md §1)."""

from __future__ import annotations

import re

_CID = re.compile(r"^[0-9]{1,32}$")


def request_filter(root: str) -> str:
    return f"{root}/dev/+/mrq"


def response_topic(root: str, cid: str) -> str:
    return f"{root}/dev/{cid}/mrs"


def cid_of_request(root: str, topic: str) -> str | None:
    """The cid in `{root}/dev/{cid}/mrq`, or None when the topic is not one of ours."""
    prefix = f"{root}/dev/"
    if not (topic.startswith(prefix) and topic.endswith("/mrq")):
        return None
    cid = topic[len(prefix):-len("/mrq")]
    return cid if _CID.match(cid) else None
