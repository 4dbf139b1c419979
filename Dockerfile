# CPU image of the HTTP service (`inspyrenet-lite serve`): slim, non-root.
#
#   docker build -t inspyrenet-lite .                          # fetches the fast weights if the builder is online
#   docker build --build-arg FETCH_WEIGHTS= -t inspyrenet-lite .   # no fetch: mount a checkpoint instead
#   docker run --rm -p 8000:8000 inspyrenet-lite
#   docker run --rm -p 8000:8000 -v "$PWD/ckpt_fast.pth:/weights/ckpt.pth:ro" inspyrenet-lite \
#       --model fast --ckpt /weights/ckpt.pth
#
# Options after the image name replace the CMD below (see `inspyrenet-lite serve --help`).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2
# (few malloc arenas: the service's threads are few and fixed, and RSS stays flat under load)

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
WORKDIR /opt/inspyrenet-lite

# The CPU build of PyTorch first (the default wheel carries CUDA: gigabytes this image does not use).
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.1"
COPY pyproject.toml README.md ./
COPY inspyrenet_lite ./inspyrenet_lite
RUN pip install ".[serve]" && rm -rf /root/.cache

USER app
ENV HOME=/home/app \
    HF_HOME=/home/app/.cache/huggingface \
    INSPYRENET_LITE_CACHE=/home/app/.cache/inspyrenet-lite
# Weights at build time when the builder has network (verified like at first use); else mount them.
ARG FETCH_WEIGHTS=fast
RUN if [ -n "$FETCH_WEIGHTS" ]; then \
      python -c "import sys; from inspyrenet_lite.weights import resolve_checkpoint; resolve_checkpoint(sys.argv[1])" \
        "$FETCH_WEIGHTS" || echo "weights not fetched (no network?): mount a checkpoint and pass --ckpt"; \
    fi

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v1/ready', timeout=4)"
# SIGTERM (docker stop) drains the requests in flight and exits 0; give it --time ~ the request deadline.
STOPSIGNAL SIGTERM
ENTRYPOINT ["inspyrenet-lite", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--model", "fast"]
