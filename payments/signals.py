"""Signals other parts of payments (and later apps) listen to, so the state machine stays small.

Both are sent inside the transaction that made the change; receivers that talk
to the outside world must defer with ``transaction.on_commit``.
"""

from django.dispatch import Signal

# kwargs: payment, previous (status), status, source
payment_status_changed = Signal()
# kwargs: refund, previous (status), status
refund_status_changed = Signal()
# kwargs: payment (a refund was requested: created in pending or final status)
refund_created = Signal()
