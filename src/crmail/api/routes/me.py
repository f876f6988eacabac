from __future__ import annotations

from fastapi import APIRouter

from crmail.api.deps import CurrentUser
from crmail.api.schemas import UserOut

router = APIRouter(prefix="/api", tags=["me"])


@router.get("/me")
async def get_me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
