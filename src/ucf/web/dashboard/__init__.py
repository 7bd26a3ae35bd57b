"""The dashboard at ``/`` (SPEC §8): catalogue, setup flow, monitoring, signals.

Server-rendered Jinja2 pages over the use cases of :mod:`ucf.service`, one
small CSS file and one small script of our own, icons vendored from Simple
Icons; no build step. Protected like the API: the admin token opens a signed
session cookie, every form carries a CSRF token.
"""

from __future__ import annotations

from fastapi import APIRouter

from ucf.web.dashboard import assets, auth, editor, oauth, pages, setup

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
router.include_router(assets.router)
router.include_router(auth.router)
router.include_router(pages.router)
router.include_router(setup.router)
router.include_router(oauth.router)
router.include_router(oauth.callback)
router.include_router(editor.router)
router.include_router(pages.fallback)  # last: only what no other route matched
