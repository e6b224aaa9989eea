"""The demo's templates: what each one says, in English and (for some) Spanish.

:mod:`app.demo` stores them as version 1 of each template.
"""

from __future__ import annotations

_EN = {
    "welcome": {
        "in_app": {"title": "Welcome to Herald", "body": "Hi {{ recipient.id }}, your account is ready."},
        "email": {
            "subject": "Welcome aboard",
            "html": "<p>Hi {{ recipient.id }},</p><p>Your account is ready. We are glad you are here.</p>",
            "text": "Hi {{ recipient.id }},\n\nYour account is ready. We are glad you are here.",
        },
        "sms": {"text": "Welcome! Your account is ready."},
        "push": {"title": "Welcome", "body": "Your account is ready."},
    },
    "low_balance": {
        "in_app": {
            "title": "Your balance is low",
            "body": "Your balance is {{ recipient.attributes.balance }}, below your "
            "{{ recipient.attributes.low_balance_threshold }} alert level.",
        },
        "email": {
            "subject": "Low balance: {{ recipient.attributes.balance }}",
            "html": "<p>Your balance is <strong>{{ recipient.attributes.balance }}</strong>, below your alert level "
            "of {{ recipient.attributes.low_balance_threshold }}.</p><p>Top up to avoid interruptions.</p>",
            "text": "Your balance is {{ recipient.attributes.balance }}, below your alert level of "
            "{{ recipient.attributes.low_balance_threshold }}.\nTop up to avoid interruptions.",
        },
        "sms": {
            "text": "Low balance: {{ recipient.attributes.balance }} "
            "(alert level {{ recipient.attributes.low_balance_threshold }}). Top up soon."
        },
        "push": {"title": "Low balance", "body": "Your balance is {{ recipient.attributes.balance }}."},
    },
    "weekly_digest": {
        "in_app": {"title": "Your week in review", "body": "Here is what happened this week."},
        "email": {
            "subject": "Your weekly digest",
            "html": "<h1>Your week</h1><p>Here is what happened this week on your {{ recipient.attributes.plan }} plan.</p>",
            "text": "Your week\n\nHere is what happened this week on your {{ recipient.attributes.plan }} plan.",
        },
        "push": {"title": "Your weekly digest", "body": "See what happened this week."},
    },
    "security_alert": {
        "in_app": {"title": "New sign-in", "body": "A new device signed in to your account. Was it you?"},
        "email": {
            "subject": "Security alert: new sign-in",
            "html": "<p>A new device signed in to your account.</p><p>If it was not you, reset your password now.</p>",
            "text": "A new device signed in to your account.\nIf it was not you, reset your password now.",
        },
        "sms": {"text": "Security alert: a new device signed in. Not you? Reset your password now."},
        "push": {"title": "Security alert", "body": "A new device signed in to your account."},
    },
    # The "comment digest" workflow (app/workflows/demo.py): each comment in the inbox now, one email for the
    # comments of a post collected over ten minutes (data.count, data.actors), if the first is still unread.
    "comment": {
        "in_app": {
            "title": "{{ data.get('actor', 'Someone') }} commented",
            "body": "{{ data.get('text', 'New comment on your post') }}",
        }
    },
    "comment_digest": {
        "email": {
            "subject": "{{ data.get('count', 1) }} new comments on your post",
            "html": "<p>{{ data.get('actors', [])|join(', ') or 'Someone' }}{% if data.get('actors') and data.get('count', 1) > data.get('actors')|length %} and {{ data.get('count', 1) - data.get('actors')|length }} others{% endif %} commented on your post.</p>",
            "text": "{{ data.get('actors', [])|join(', ') or 'Someone' }}{% if data.get('actors') and data.get('count', 1) > data.get('actors')|length %} and {{ data.get('count', 1) - data.get('actors')|length }} others{% endif %} commented on your post.",
        }
    },
}

_ES = {
    "welcome": {
        "in_app": {"title": "Bienvenido a Herald", "body": "Hola {{ recipient.id }}, tu cuenta está lista."},
        "email": {
            "subject": "Te damos la bienvenida",
            "html": "<p>Hola {{ recipient.id }},</p><p>Tu cuenta está lista.</p>",
            "text": "Hola {{ recipient.id }},\n\nTu cuenta está lista.",
        },
        "sms": {"text": "¡Bienvenido! Tu cuenta está lista."},
        "push": {"title": "Bienvenido", "body": "Tu cuenta está lista."},
    },
    "low_balance": {
        "in_app": {
            "title": "Tu saldo es bajo",
            "body": "Tu saldo es {{ recipient.attributes.balance }}, por debajo de tu nivel de alerta "
            "de {{ recipient.attributes.low_balance_threshold }}.",
        },
        "email": {
            "subject": "Saldo bajo: {{ recipient.attributes.balance }}",
            "html": "<p>Tu saldo es <strong>{{ recipient.attributes.balance }}</strong>, por debajo de tu nivel de "
            "alerta de {{ recipient.attributes.low_balance_threshold }}.</p>",
            "text": "Tu saldo es {{ recipient.attributes.balance }}, por debajo de tu nivel de alerta de "
            "{{ recipient.attributes.low_balance_threshold }}.",
        },
        "sms": {"text": "Saldo bajo: {{ recipient.attributes.balance }}. Recarga pronto."},
        "push": {"title": "Saldo bajo", "body": "Tu saldo es {{ recipient.attributes.balance }}."},
    },
}

# key -> (name, type, category)
TEMPLATES = {
    "welcome": ("Welcome", "transactional", "account"),
    "low_balance": ("Low balance", "transactional", "low_balance"),
    "weekly_digest": ("Weekly digest", "marketing", "marketing"),
    "security_alert": ("Security alert", "security", "security"),
    "comment": ("Comment", "transactional", "comments"),
    "comment_digest": ("Comment digest", "transactional", "comments"),
}


def template_variants(key: str) -> dict[str, dict]:
    """Locale -> the template's content per channel: English always, Spanish where it is written."""
    variants = {"en": _EN[key]}
    if key in _ES:
        variants["es"] = _ES[key]
    return variants
