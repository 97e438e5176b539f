"""Rules about buyer keys that the request schemas, the query parameters and the services share."""

from __future__ import annotations

import re

_KEY_GROUP = r"[a-z0-9_-]{1,64}"
# A key's `key_group`: a label for the buyer's own reporting (`GET /api/usage/by-group`,
# `GET /api/usage/by-key?group=`). The JSON Schema form, as the API describes it.
KEY_GROUP_PATTERN = f"^{_KEY_GROUP}$"


def is_key_group(value: str) -> bool:
    """Whether `value` is a name a key's group may have (`fullmatch`: Python's `$` would also let a final
    newline through)."""
    return re.fullmatch(_KEY_GROUP, value) is not None
