"""Schemathesis hooks for infra/schemathesis: generation that follows two rules infra/openapi.yaml states
but JSON Schema cannot express, so that schema-valid data is what the contract calls valid. No check and no
response is filtered: every answer of the service is checked as it comes.

- `occurred_at` at most `x-max-seconds-after-receipt` (stated in the spec) after receipt: a generated
  date-time later than that is moved to the present.
- An `Idempotency-Key` is bound to one body (same key, different body: 422, stated in the spec): each
  generated key is derived from the body too, so two different bodies never share a key.
"""

import hashlib
import json
import pathlib
import re
from datetime import datetime, timedelta, timezone

import schemathesis
import yaml

VALID_KEY = re.compile(r"^[ -~]{1,255}$")
SPEC = yaml.safe_load((pathlib.Path(__file__).parent / "openapi.yaml").read_text())
MAX_AHEAD = timedelta(
    seconds=SPEC["components"]["schemas"]["Change"]["properties"]["occurred_at"]["x-max-seconds-after-receipt"]
)


def _clamp(change):
    if isinstance(change, dict) and isinstance(change.get("occurred_at"), str):
        try:
            at = datetime.fromisoformat(change["occurred_at"].replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            return change  # not a date-time: leave the invalid value for negative testing
        if at.tzinfo is not None and at > datetime.now(timezone.utc) + MAX_AHEAD:
            change = dict(change, occurred_at=datetime.now(timezone.utc).isoformat())
    return change


def _clamp_body(body):
    if isinstance(body, dict) and isinstance(body.get("changes"), list):
        return dict(body, changes=[_clamp(c) for c in body["changes"]])
    return _clamp(body)


@schemathesis.hook
def map_case(context, case):
    case.body = _clamp_body(case.body)
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str) and VALID_KEY.match(headers[name]):
            # Key order included: the server compares the body's bytes.
            digest = hashlib.sha256((headers[name] + json.dumps(case.body, default=str)).encode())
            headers[name] = digest.hexdigest()
    return case
