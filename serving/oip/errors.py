"""The one error the codec raises: a request the client got wrong, naming the field at fault."""
from __future__ import annotations

import json


class InvalidInput(ValueError):
    """A malformed request. `field` is a path into the request ("inputs[0].shape",
    "parameters.slo_ms", "body"); the router answers 400 with `to_json()`."""

    status_code = 400

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def to_dict(self) -> dict:
        """The v2 error body: {"error": "<field>: <message>"}."""
        return {"error": str(self)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict()).encode()
