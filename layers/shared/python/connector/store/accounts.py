"""Items of an AlfaCRM account rather than of one integration (several integrations may share an account).

`ACCT#<hash of the account>` / `PHONES`: what phone searches taught about the account (`PhoneSearch`), so a
cold container searches with the spelling the account stores at once instead of learning it again. The key
is the same hash of (base URL, e-mail) the account-wide rate limit uses: no personal data in the keys.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

from connector.models.lookups import PhoneSearch
from connector.store.base import DynamoTable, load, model_item
from connector.store.ratelimit import SharedWindowLimiter

PHONES = "PHONES"


class AccountStore:
    def __init__(self, table: DynamoTable) -> None:
        self.t = table

    @staticmethod
    def _pk(account: Hashable) -> str:
        return f"ACCT#{SharedWindowLimiter.account_key(account)}"

    def phone_search(self, account: Hashable) -> PhoneSearch | None:
        return load(PhoneSearch, self.t.get(self._pk(account), PHONES, consistent=False))

    def put_phone_search(self, account: Hashable, learned: PhoneSearch) -> None:
        self.t.put({"pk": self._pk(account), "sk": PHONES, **model_item(learned), "updated_at": int(time.time())})
