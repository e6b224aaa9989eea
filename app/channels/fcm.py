"""Firebase Cloud Messaging HTTP v1 with an OAuth2 access token from a service account.

``POST {FCM_BASE}/v1/projects/{project_id}/messages:send``. google-auth signs
the service account's JWT grant and exchanges it at the account's
``token_uri``; the access token (an hour) is reused until google-auth
considers it close to expiry.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2 import service_account

from app.channels.base import DeviceTarget, Message, Outcome, Result
from app.channels.guard_async import guarded_async
from app.channels.http import FastClient, HttpError, HttpResponse, retry_after, transport_failure

SCOPES = ["https://www.googleapis.com/auth/firebase.messaging"]
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
DEAD_TOKEN_CODES = {"UNREGISTERED", "SENDER_ID_MISMATCH"}


def fcm_body(message: Message, token: str) -> dict:
    """The v1 message. ``data`` values must be strings, so nested values travel as JSON."""
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in message.data.items()}
    data["notification_id"] = message.notification_id
    android = {"priority": "HIGH" if message.priority in ("high", "critical") else "NORMAL"}
    if message.collapse_key:
        android["collapse_key"] = message.collapse_key
    body = {"token": token, "data": data, "android": android}
    notification = {key: message.content[key] for key in ("title", "body") if message.content.get(key)}
    if notification:
        body["notification"] = notification
    return {"message": body}


def fcm_error(response: HttpResponse) -> tuple[str, bool]:
    """(error code, whether the error is about the registration token)."""
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return f"http_{response.status_code}", False
    code, on_token = error.get("status") or f"http_{response.status_code}", False
    for detail in error.get("details", []):
        if detail.get("@type") == FCM_ERROR_TYPE and detail.get("errorCode"):
            code = detail["errorCode"]
        if detail.get("@type") == BAD_REQUEST_TYPE:
            on_token = any(v.get("field") == "message.token" for v in detail.get("fieldViolations", []))
    return code, on_token


class FcmClient:
    """Sends to Android devices on the worker's HTTP loop; the OAuth token is shared by every send."""

    name = "fcm"

    def __init__(self, config: dict, limit: int = 16):
        self.config = config
        self.client = FastClient(config, limit=limit)
        self._credentials = None
        self._session = requests.Session()
        self._lock = threading.Lock()
        self._refresher: tuple[int, ThreadPoolExecutor] | None = None  # (pid, executor): none survives a fork

    def access_token(self, force: bool = False) -> str:
        with self._lock:
            if self._credentials is None:
                self._credentials = service_account.Credentials.from_service_account_file(
                    self.config["FCM_SERVICE_ACCOUNT_FILE"], scopes=SCOPES
                )
            if force or not self._credentials.valid:
                self._credentials.refresh(google.auth.transport.requests.Request(self._session))
            return self._credentials.token

    async def fresh_access_token(self) -> str:
        """The token without blocking the loop: a valid one at once, a refresh (an HTTP exchange) in a thread.

        The refresh has a thread of its own: the loop's default executor can be full of sends that wait for
        this very token (a circuit not yet trusted as closed sends through :func:`guard.guarded` there).
        """
        credentials = self._credentials
        if credentials is not None and credentials.valid:
            return credentials.token
        if self._refresher is None or self._refresher[0] != os.getpid():
            self._refresher = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="fcm-token"))
        refresh = contextvars.copy_context().run
        return await asyncio.get_running_loop().run_in_executor(self._refresher[1], refresh, self.access_token)

    async def send(self, device: DeviceTarget, message: Message) -> Result:
        if not (self.config.get("FCM_PROJECT_ID") and self.config.get("FCM_SERVICE_ACCOUNT_FILE")):
            return Result(
                Outcome.PERMANENT, self.name, error_code="not_configured", detail="FCM_* settings are not set"
            )
        body = fcm_body(message, device.token)
        return await guarded_async(self.name, lambda: self._post(body), self.config.get("FCM_RATE", 0.0))

    async def _post(self, body: dict) -> Result:
        url = f"{self.config['FCM_BASE']}/v1/projects/{self.config['FCM_PROJECT_ID']}/messages:send"
        try:
            token = await self.fresh_access_token()
            response = await self.client.post(url, json_body=body, headers={"authorization": f"Bearer {token}"})
        except HttpError as error:
            return transport_failure(self.name, error)
        except google.auth.exceptions.GoogleAuthError as error:
            return Result(
                Outcome.TRANSIENT, self.name, error_code="oauth_error", detail=str(error)[:500], provider_fault=True
            )
        if response.status_code == 200:
            return Result(Outcome.DISPATCHED, self.name, provider_message_id=response.json().get("name"))
        code, on_token = fcm_error(response)
        if code in DEAD_TOKEN_CODES or (code == "INVALID_ARGUMENT" and on_token):
            return Result(Outcome.TOKEN_GONE, self.name, error_code=code, detail=response.text[:500])
        if response.status_code == 401:
            self._credentials = None  # re-read and re-exchange on the next try
            return Result(
                Outcome.TRANSIENT, self.name, error_code=code, detail=response.text[:500], provider_fault=True
            )
        if response.status_code == 429 or response.status_code >= 500:
            return Result(
                Outcome.TRANSIENT,
                self.name,
                error_code=code,
                detail=response.text[:500],
                retry_after=retry_after(response),
                provider_fault=response.status_code >= 500,
            )
        return Result(Outcome.PERMANENT, self.name, error_code=code, detail=response.text[:500])

    def close(self) -> None:
        self.client.close()
        self._session.close()
        if self._refresher is not None:
            self._refresher[1].shutdown(wait=False)
            self._refresher = None
