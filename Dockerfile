# The engine as one image: HTTP (8080) and gRPC (50051) over Redis at NBA_REDIS_URL.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/app/.numba-cache
WORKDIR /app
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential git \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY engine ./engine
COPY rules ./rules
COPY models ./models
COPY proto ./proto
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e . \
    && useradd --system --uid 10001 nba && mkdir -p /app/var /app/.numba-cache && chown -R nba /app/var /app/.numba-cache
USER nba
# Compile the numba kernels into the image's cache, so a container is ready in about a second.
RUN python -c "from engine.bootstrap import warm_up_kernels; warm_up_kernels()"
EXPOSE 8080 50051
ENV NBA_HOST=0.0.0.0 NBA_ENV=production
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz').status != 200)"
CMD ["nba", "serve"]
