# 阜政通 image: one image for every service; the command picks the role, e.g.
#   fzt serve intake --host 0.0.0.0 --port 8001     (web)
#   fzt worker intake                               (bus consumer, outbox relay, timer sweep)
#   sh -c "fzt db upgrade && fzt bpmn deploy"       (one-shot migration)
# See docker-compose.yml and docs/operations.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the package (non-editable) from a scratch copy of the sources, then drop the copy:
# the code runs from site-packages. __pycache__ is removed first so that the package-data
# globs (migrations/**/*) do not pick up stale bytecode from the build context.
WORKDIR /src
COPY pyproject.toml ./
COPY services ./services
RUN find . -name __pycache__ -prune -exec rm -rf {} + \
    && pip install . \
    && cd / && rm -rf /src

# Diagrams are read from FZT_BPMN_DIR by `fzt bpmn deploy`, the holiday calendar from
# FZT_HOLIDAY_DIR. Without these variables the defaults would resolve next to the installed
# package (site-packages/bpmn, site-packages/var, site-packages/data).
WORKDIR /app
COPY bpmn /app/bpmn
COPY data/holidays /app/data/holidays
ENV FZT_BPMN_DIR=/app/bpmn \
    FZT_HOLIDAY_DIR=/app/data/holidays \
    FZT_VAR_DIR=/app/var

# /app/var/blobs is created here, owned by fzt: a named volume mounted on it (compose's
# "blobs", the uploads of every service) starts as a copy of it, owner included.
RUN groupadd --system --gid 10001 fzt \
    && useradd --system --uid 10001 --gid fzt --home-dir /app --no-create-home --shell /usr/sbin/nologin fzt \
    && mkdir -p /app/var/blobs \
    && chown -R fzt:fzt /app/var
USER fzt

EXPOSE 8001 8002 8003 8004
CMD ["fzt", "--help"]
