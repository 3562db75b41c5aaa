"""The catalog request ids the order group issues: `<cluster>:<epoch>:o<order_id>.<attempt>`.

An order id alone is not unique over time: an orders database restored from a backup hands out again the
ids issued after the backup, and the catalog still holds their results (a buy of item 1 would be answered
with the stored result of item 7's buy). So each id names the order group that issued it — the cluster id
and the group's *epoch*, which every restore of an orders database bumps (`pygmy.ops.backup`) — and the
catalog accepts ids of one namespace only: the one it knows, or one of a higher epoch of the same cluster
(the order group was restored: the older namespace's requests are dropped and refused from then on).
"""

from __future__ import annotations

import dataclasses
import re

_PATTERN = re.compile(r"([A-Za-z0-9_.-]{1,64}):(\d{1,9}):o(\d{1,18})\.(\d{1,9})")


@dataclasses.dataclass(frozen=True)
class RequestId:
    cluster: str
    epoch: int
    order_id: int
    attempt: int

    @property
    def namespace(self) -> tuple[str, int]:  # (cluster, epoch)
        return self.cluster, self.epoch

    def __str__(self) -> str:
        return f"{self.cluster}:{self.epoch}:o{self.order_id}.{self.attempt}"


def parse_request_id(text: str) -> RequestId | None:
    match = _PATTERN.fullmatch(text)
    if match is None:
        return None
    cluster, epoch, order_id, attempt = match.groups()
    return RequestId(cluster, int(epoch), int(order_id), int(attempt))


def namespace_text(cluster: str, epoch: int) -> str:
    return f"{cluster}:{epoch}"
