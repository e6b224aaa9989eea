"""One delivery, many devices: how per-device outcomes become the delivery's outcome. Pure.

A recipient with a phone, a tablet and two browsers gets one delivery per
channel, sent to every active device. The rules:

- Any device reached -> the delivery succeeded (DISPATCHED). Dead tokens
  found on the way are deactivated; devices that failed transiently are *not*
  retried, because a retry re-sends to every device and the ones that already
  showed the notification would show it twice. The event detail lists every
  device's outcome, so staff can see a partial delivery.
- No device reached, but one failed transiently (5xx, timeout, 429) -> the
  whole delivery retries (nobody saw it, so nobody sees it twice); the dead
  tokens are gone by then and are not tried again.
- No device reached and one only waits (open circuit, rate limit) -> WAIT.
- Every device dead -> TOKEN_GONE; a payload too large or a similar message
  problem -> PERMANENT.
"""

from __future__ import annotations

from app.channels.base import Outcome, Result

SUCCESS = (Outcome.DISPATCHED, Outcome.DELIVERED)


def combine(channel: str, results: list[tuple[int, Result]]) -> Result:
    """Fold ``(device id, result)`` pairs into one Result for the delivery."""
    if not results:
        return Result(Outcome.PERMANENT, channel, error_code="no_active_device", detail="no active device to send to")
    dead = tuple(
        (device_id, f"{r.provider}: {r.error_code or r.outcome.value}")
        for device_id, r in results
        if r.outcome is Outcome.TOKEN_GONE
    )
    detail = "; ".join(f"device {device_id}: {_describe(r)}" for device_id, r in results)
    successes = [r for _device, r in results if r.outcome in SUCCESS]
    if successes:
        ids = ",".join(r.provider_message_id for r in successes if r.provider_message_id)
        return Result(
            Outcome.DISPATCHED,
            _providers(results),
            provider_message_id=ids[:255] or None,
            detail=detail,
            dead_devices=dead,
        )
    for outcome in (Outcome.TRANSIENT, Outcome.WAIT, Outcome.PERMANENT, Outcome.TOKEN_GONE):
        matching = [r for _device, r in results if r.outcome is outcome]
        if matching:
            retry_after = max((r.retry_after for r in matching if r.retry_after), default=None)
            return Result(
                outcome,
                _providers(results),
                error_code=matching[0].error_code,
                detail=detail,
                retry_after=retry_after,
                dead_devices=dead,
            )
    raise ValueError(f"unexpected outcomes {[r.outcome for _d, r in results]}")


def _providers(results: list[tuple[int, Result]]) -> str:
    return "+".join(sorted({r.provider for _device, r in results}))


def _describe(result: Result) -> str:
    if result.outcome in SUCCESS:
        return f"{result.provider} ok"
    text = f"{result.provider} {result.outcome.value} {result.error_code or ''}".rstrip()
    return text + (" (deactivated)" if result.outcome is Outcome.TOKEN_GONE else "")
