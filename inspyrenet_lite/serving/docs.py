"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) that work without internet.

FastAPI's own pages load their scripts from a CDN: on an offline machine they stay blank. Here
the scripts and styles come from the fastapi-offline package (the ``[serve]`` extra), served
under :data:`ASSETS_PATH`; without that package the pages fall back to the CDN (and say so in
the log).
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

logger = logging.getLogger(__name__)

SWAGGER_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
#: Where the pages' scripts, styles and icon are served.
ASSETS_PATH = "/docs/assets"
#: The files each page needs, as the package ships them.
_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
#: No call to swagger.io's validator badge: the page must not reach out.
_SWAGGER_PARAMETERS = {"validatorUrl": None}
#: Images from this server only (the page works without the ones it would fetch elsewhere).
_LOCAL_IMAGES = "img-src 'self' data:"


def assets_folder() -> Path | None:
    """The folder of Swagger UI's and ReDoc's files in the installed fastapi-offline package, or None."""
    try:
        folder = Path(str(importlib.resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if all((folder / name).is_file() for name in _ASSETS) else None


def add_docs_pages(app: FastAPI) -> None:
    """Serve ``/docs``, its OAuth2 redirect and ``/redoc`` on ``app`` (built with ``docs_url=None,
    redoc_url=None``), with their assets from this server when fastapi-offline is installed."""
    folder = assets_folder()
    if folder is not None:
        app.mount(ASSETS_PATH, StaticFiles(directory=folder), name="docs-assets")
    else:
        logger.warning("fastapi-offline is not installed (the [serve] extra): /docs and /redoc load "
                       "their scripts from a CDN and stay blank without internet")

    def assets(request: Request, **names: str) -> dict[str, str]:
        """``names`` (argument -> file) as URLs of our copies; none without the package (FastAPI's CDN)."""
        if folder is None:
            return {}
        return {argument: f"{_root(request)}{ASSETS_PATH}/{name}" for argument, name in names.items()}

    @app.get(SWAGGER_PATH, include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{_root(request)}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{_root(request)}{OAUTH2_REDIRECT_PATH}",
            swagger_ui_parameters=_SWAGGER_PARAMETERS,
            **assets(request, swagger_js_url="swagger-ui-bundle.js", swagger_css_url="swagger-ui.css",
                     swagger_favicon_url="favicon.png"),
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=f"{_root(request)}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            with_google_fonts=folder is None,
            **assets(request, redoc_js_url="redoc.standalone.js", redoc_favicon_url="favicon.png"),
        )
        if folder is not None:  # ReDoc's "API docs by Redocly" logo comes from its CDN, whatever its options
            page.headers["Content-Security-Policy"] = _LOCAL_IMAGES
        return page


def _root(request: Request) -> str:
    """The prefix the app is mounted under (behind a proxy or Ray Serve's route prefix), as FastAPI's pages use."""
    return str(request.scope.get("root_path", "")).rstrip("/")
