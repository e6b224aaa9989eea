# Herald: one image, every role (see deploy/entrypoint.sh):
#   docker run IMAGE web | worker [QUEUE...] | scheduler | migrate | demo | flask ARGS...
# Build: docker build -t herald .   (or: podman build -t herald .)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the requirements (wheels only: nothing here compiles) ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/herald/venv \
 && /opt/herald/venv/bin/pip install --no-compile -r /tmp/requirements.txt \
 && /opt/herald/venv/bin/python -m compileall -q /opt/herald/venv/lib

# --- runtime: the virtualenv, the code, tini as PID 1; no pip cache, no compilers, not root ---
FROM ${PYTHON_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 herald \
 && useradd --system --uid 10001 --gid herald --home-dir /var/lib/herald --shell /usr/sbin/nologin herald \
 && install -d -o herald -g herald -m 0750 /var/lib/herald

COPY --from=build /opt/herald/venv /opt/herald/venv
WORKDIR /srv/herald
COPY wsgi.py requirements.txt ./
COPY app/ app/
COPY jobs/ jobs/
COPY migrations/ migrations/
COPY templates/ templates/
COPY static/ static/
COPY deploy/entrypoint.sh /usr/local/bin/herald-entrypoint
RUN python3 -m compileall -q app jobs migrations wsgi.py

ENV PATH=/opt/herald/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HERALD_INSTANCE_PATH=/var/lib/herald \
    HERALD_HOST=0.0.0.0 \
    HERALD_PORT=8000

USER 10001:10001
VOLUME ["/var/lib/herald"]
EXPOSE 8000
# /healthz (database and Redis) for the web role; the other roles are healthy while their process runs.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["herald-entrypoint", "healthcheck"]
# tini reaps the RQ scheduler process a worker forks and passes SIGTERM on to the role.
ENTRYPOINT ["tini", "--", "herald-entrypoint"]
CMD ["web"]
