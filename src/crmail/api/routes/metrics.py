"""``GET /metrics``: the cluster's figures for Prometheus, behind their own secret.

Off unless ``CRMAIL_METRICS_TOKEN`` is set (then 404, as for any unknown path). Not a
user's API token: the figures span every workspace, and a workspace admin is not the
operator.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crmail.api.deps import ServicesDep
from crmail.errors import NotFound, Unauthenticated
from crmail.metrics import CONTENT_TYPE, prometheus_text
from crmail.storage.metrics import snapshot

router = APIRouter(tags=["operations"])

_bearer = HTTPBearer(auto_error=False)


@router.get("/metrics", include_in_schema=False)
async def metrics(
    services: ServicesDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Response:
    expected = services.settings.metrics_token
    if not expected:
        raise NotFound("not found")
    given = creds.credentials if creds is not None else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthenticated(
            "missing or wrong metrics token",
            hint="send 'Authorization: Bearer <CRMAIL_METRICS_TOKEN>'",
        )
    snap = await services.db.read(snapshot)
    # A process running sync (role all) also says how many accounts it holds.
    keeper = getattr(services.sync, "keeper", None)
    held = len(keeper.held) if keeper is not None else None
    return Response(prometheus_text(snap, process_leases=held), media_type=CONTENT_TYPE)
