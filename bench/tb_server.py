"""A minimal HTTP server around transparent-background 1.3.4's ``Remover`` (for bench/serve_compare.py).

transparent-background ships no HTTP service; this is the smallest fair one a
user would write: FastAPI + uvicorn, the model loaded once, ``POST /remove``
with the image as the raw body answering the RGBA cut-out as PNG (what
``inspyrenet-lite serve``'s ``/v1/remove`` answers by default), and one
request at a time on one inference thread (its ``Remover`` has no batch API),
so the event loop stays free. ``GET /ready`` answers 200 once the model is
loaded and one warm-up forward has run.

    python bench/tb_server.py --ckpt swinb_fast.pth --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image


def create_app(ckpt: str, mode: str = "fast", device: str = "cpu") -> FastAPI:
    """The FastAPI app; the Remover is built at startup on the inference thread."""
    inference = ThreadPoolExecutor(1, thread_name_prefix="tb-inference")
    holder: dict[str, Any] = {}

    def load() -> None:
        from transparent_background import Remover

        with contextlib.redirect_stdout(io.StringIO()):  # it prints its settings
            remover = Remover(mode=mode, ckpt=ckpt, device=device, resize="static", jit=False)
        remover.process(Image.new("RGB", (64, 64)), type="rgba")  # warm-up
        holder["remover"] = remover

    def cut_out(data: bytes) -> bytes:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
        result = holder["remover"].process(image, type="rgba")
        buffer = io.BytesIO()
        result.save(buffer, format="PNG")
        return buffer.getvalue()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.get_running_loop().run_in_executor(inference, load)
        try:
            yield
        finally:
            await asyncio.gather(loading, return_exceptions=True)
            inference.shutdown(wait=True)

    app = FastAPI(lifespan=lifespan)

    @app.get("/ready")
    async def ready() -> JSONResponse:
        return JSONResponse({"ready": "remover" in holder}, status_code=200 if "remover" in holder else 503)

    @app.post("/remove")
    async def remove(request: Request) -> Response:
        body = await request.body()
        try:
            png = await asyncio.get_running_loop().run_in_executor(inference, cut_out, body)
        except (OSError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=415)
        return Response(png, media_type="image/png")

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint in the authors' layout (bench/ckpt.py builds one)")
    parser.add_argument("--mode", default="fast", choices=("fast", "base"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(create_app(args.ckpt, args.mode, args.device), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
