"""gunicorn's settings for Herald's web role: ``gunicorn -c app/gunicorn_config.py wsgi:app`` (``flask web`` runs that).

gunicorn loads this file by path, before it forks and before the gevent worker
monkey-patches the standard library, so nothing here imports Herald at module
level: the app is imported by each worker, after the patch.

Command-line options (``flask web --host/--port/--workers``, or ``GUNICORN_CMD_ARGS``)
override what is set here.
"""

import signal

worker_class = "gevent"  # SSE streams are long requests: one greenlet each, not one thread
worker_connections = 2000
graceful_timeout = 25  # under Kubernetes' default 30 s grace period; compose.yaml gives web 30 s too
control_socket_disable = True  # its default path is one per user, which two Herald instances would share


def post_worker_init(worker):
    """On SIGTERM, besides gunicorn's own graceful stop (no new connections, wait for open requests), end every
    SSE stream with a final ``retry:`` line, so its browser reconnects to another web process at once instead
    of this one holding the stream until the graceful timeout cuts it."""
    import gevent

    gunicorn_handler = signal.getsignal(signal.SIGTERM)

    def stop(signum, frame):
        gunicorn_handler(signum, frame)
        gevent.spawn(_drain, worker)

    signal.signal(signal.SIGTERM, stop)


def _drain(worker):
    from app.realtime.stream import drain_streams

    count = drain_streams(worker.wsgi)
    worker.log.info("SIGTERM: told %d open inbox stream(s) to reconnect elsewhere", count)
