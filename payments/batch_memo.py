"""Per-merchant reads shared by the events of one webhook batch.

While a drain applies a batch of gateway events in one transaction
(``services.webhook_apply_batch``), every event of one merchant asks the same
questions: does the merchant have an enabled webhook endpoint, which fraud rules
are enabled. Inside :func:`shared` the first answer is kept for the rest of the
batch (at most ``DRAIN_BATCH`` events, a fraction of a second), so a rule or an
endpoint created meanwhile counts from the next batch on. Outside it, every call
reads the database, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
_memo: ContextVar[dict[Hashable, Any] | None] = ContextVar("payments_batch_memo", default=None)


@contextmanager
def shared() -> Iterator[None]:
    """Keep the first answer to each question asked through :func:`remember` until the block ends."""
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def remember(key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, or inside :func:`shared` the answer it gave for ``key`` earlier in the block."""
    memo = _memo.get()
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]  # type: ignore[no-any-return]
