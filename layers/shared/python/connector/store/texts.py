"""Text-communication state: communication → customer links, chat and request progress, watermarks."""

from __future__ import annotations

import time
from typing import Any

from connector.store.base import DynamoTable, int_pk


class TextStore:
    def __init__(self, table: DynamoTable) -> None:
        self.t = table

    # --- the link the deals side reads ----------------------------------------------------------
    def link_customer(
        self, integration_id: str, customer_id: int, communication_id: int | str, communication_type: str
    ) -> bool:
        """Remember that the connector created `customer_id` from this UIS communication.

        Written once (the first communication that created the lead wins), so the first-sale deal
        carries the exact communication UIS should attribute it to. Returns False if already linked.
        """
        return self.t.put(
            {
                "pk": int_pk(integration_id),
                "sk": f"CUSTCOMM#{customer_id}",
                "communication_id": int(communication_id),
                "communication_type": communication_type,
                "linked_at": int(time.time()),
            },
            if_absent=True,
        )

    def customer_link(self, integration_id: str, customer_id: int) -> dict[str, Any] | None:
        """`{"communication_id": int, "communication_type": "chat"|"offline_message"}` or None."""
        item = self.t.get(int_pk(integration_id), f"CUSTCOMM#{customer_id}", consistent=False)
        if not item:
            return None
        return {"communication_id": item["communication_id"], "communication_type": item["communication_type"]}
