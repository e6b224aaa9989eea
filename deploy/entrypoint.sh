#!/bin/sh
# The Herald image's entrypoint: one image, every role. Each role is a `flask` command, so systemd units,
# Kubernetes manifests and Procfiles can run the same commands without this script.
#
#   web                  flask web            (gunicorn + gevent on HERALD_HOST:HERALD_PORT, 0.0.0.0:8000 here)
#   worker [QUEUE...]    flask worker QUEUE…  (default: critical high normal low; `worker critical high` = urgent only)
#   scheduler            flask scheduler      (periodic work)
#   migrate              flask db upgrade     (one-shot), then `flask seed-demo --when-enabled` (HERALD_DEMO_DATA)
#   demo                 flask up             (everything in one container: SQLite, embedded Redis, mail sink)
#   flask ARGS...        any other command, e.g. `flask create-staff you@example.com --role admin`
#   healthcheck          the image's HEALTHCHECK: /healthz for web, nothing to check for the other roles
set -eu

role="${1:-web}"
[ "$#" -gt 0 ] && shift
flask="flask --app wsgi"

case "$role" in
  web)       exec $flask web "$@" ;;
  worker)    exec $flask worker "$@" ;;
  scheduler) exec $flask scheduler "$@" ;;
  demo)      exec $flask up "$@" ;;
  migrate)   $flask db upgrade && exec $flask seed-demo --when-enabled ;;
  flask)     exec $flask "$@" ;;
  healthcheck)
    # PID 1 is `tini -- herald-entrypoint ROLE ...`; only the web role has an endpoint to ask.
    role=web after=
    for arg in $(tr '\0' ' ' < /proc/1/cmdline); do
      [ -n "$after" ] && { role=$arg; break; }
      case "$arg" in */herald-entrypoint|herald-entrypoint) after=1 ;; esac
    done
    [ "$role" = web ] || exit 0
    exec python3 -c 'import os, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/healthz" % os.environ.get("HERALD_PORT", "8000"), timeout=3)' ;;
  *)
    echo "herald: unknown role '$role'; use web, worker [QUEUE...], scheduler, migrate, demo or flask ARGS..." >&2
    exit 64 ;;
esac
