"""The ``log`` carrier: accepts every message at once and logs it, its numbers masked.

It sends nothing. It is what local runs and most tests use, and the default. Its record is
on the line of the request that sent the message (one line per request), or on a line of
its own when the sweeper sent it.
"""

from __future__ import annotations

import secrets

from sms import logs
from sms.carriers import Outgoing, Receipt
from sms.domain import SENT


class LogCarrier:
    name = "log"
    host: str | None = None  # it calls nowhere

    def send(self, sms: Outgoing, timeout: float) -> Receipt:
        """Accept the message: an id of its own, and a line in the log instead of an SMS."""
        carrier_id = "LM" + secrets.token_hex(16)
        logs.detail(
            f"SMS {carrier_id} accepted by the log carrier (not sent)",
            carrier="log",
            carrier_id=carrier_id,
            end_user_number=logs.mask(sms.to_number),
            outbound_number=logs.mask(sms.from_number),
        )
        return Receipt(carrier_id, SENT)

    def find(self, sms: Outgoing, timeout: float) -> list[Receipt]:
        """Nothing is ever held: what it accepted was never sent anywhere."""
        return []
