"""Render per-channel content from templates in Jinja's sandbox.

User-authored templates can read the recipient, their attributes and the
notification's ``data``; nothing else. An undefined variable is an error --
we would rather fail a delivery with a reason than send a blank message.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment

from app.channels import content_fields, field_limits, optional_fields, variant_sources

# The fields each channel's variant provides, those it may leave out, and the longest rendered text a
# channel accepts: declared on the channel adapters (app/channels/).
CHANNEL_FIELDS = content_fields()
OPTIONAL_FIELDS = optional_fields()
FIELD_LIMITS = field_limits()

_text_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_html_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


@dataclass
class RenderError(Exception):
    channel: str
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.channel}.{self.field}{where}: {self.message}"


def locale_chain(locale: str | None, default_locale: str) -> list[str]:
    """``pt-BR`` tries ``pt-BR``, then ``pt``, then the template's default locale."""
    chain = []
    if locale:
        chain.append(locale)
        if "-" in locale:
            chain.append(locale.split("-")[0])
    chain.append(default_locale)
    return list(dict.fromkeys(chain))


def pick_variant(variants: dict, channel: str, locale: str | None, default_locale: str) -> dict | None:
    """The channel's fields in the best available locale, or None if no locale has this channel."""
    for name in variant_sources(channel):
        for candidate in locale_chain(locale, default_locale):
            variant = variants.get(candidate, {}).get(name)
            if variant:
                return variant
    return None


@lru_cache(maxsize=2048)
def _compiled(html: bool, source: str) -> Template:
    """Compile each template source once per process: a campaign or rule renders the same few sources
    for every recipient, and compiling costs ~10x the rendering."""
    return (_html_env if html else _text_env).from_string(source)


def render_fields(channel: str, variant: dict, context: dict) -> dict[str, str]:
    """Render every field of a channel variant; raise RenderError naming the field and line."""
    rendered = {}
    for field in CHANNEL_FIELDS[channel]:
        source = variant.get(field)
        if source is None:
            if (channel, field) in OPTIONAL_FIELDS:
                continue
            raise RenderError(channel, field, "missing")
        try:
            value = _compiled(field == "html", source).render(context)
        except TemplateSyntaxError as error:
            raise RenderError(channel, field, error.message or "syntax error", error.lineno) from None
        except UndefinedError as error:
            raise RenderError(channel, field, error.message or "undefined variable") from None
        except TemplateError as error:
            raise RenderError(channel, field, str(error)) from None
        if not value.strip() and field != "html":
            raise RenderError(channel, field, "rendered empty")
        limit = FIELD_LIMITS.get((channel, field))
        if limit and len(value) > limit:
            raise RenderError(channel, field, f"{len(value)} characters, over the limit of {limit}")
        rendered[field] = value
    return rendered


def inline_variant(channel: str, title: str | None, body: str | None) -> dict:
    """Content for notifications sent with a literal title/body instead of a template.

    The text travels as variables (``notification.title``/``.body``), never as
    template source: a caller's braces are not evaluated and HTML is escaped.
    """
    heading = "{{ notification.title }}" if title else "{{ notification.body }}"
    text = "{{ notification.body }}" if body else "{{ notification.title }}"
    if CHANNEL_FIELDS[channel] == ("text",):  # one text field (SMS) carries both
        return {"text": "{{ notification.title }}: {{ notification.body }}" if title and body else text}
    by_field = {"title": heading, "subject": heading, "body": text, "html": "<p>" + text + "</p>", "text": text}
    return {field: by_field[field] for field in CHANNEL_FIELDS[channel]}


def syntax_errors(source: str, html: bool = False) -> str | None:
    """A template's syntax error with its line, for save-time validation; None when it parses."""
    try:
        (_html_env if html else _text_env).parse(source)
    except TemplateSyntaxError as error:
        return f"line {error.lineno}: {error.message}"
    return None


def referenced_variables(source: str) -> set[str]:
    """Top-level names a template reads (``recipient``, ``data``...), for save-time checks."""
    return meta.find_undeclared_variables(_text_env.parse(source))



# Names a template may read; anything else is a typo that would fail every send.
ALLOWED_VARIABLES = frozenset({"recipient", "data", "notification"})


def error_line(error: BaseException) -> int | None:
    """The template line a rendering error happened on.

    Jinja rewrites tracebacks so that frames of template code carry the
    template's file name ``<template>`` and its line, which is how an
    undefined variable on line 3 is reported as line 3.
    """
    line = getattr(error, "lineno", None)
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == "<template>":
            line = frame.tb_lineno
        frame = frame.tb_next
    return line


def render_field(channel: str, field: str, source: str, context: dict) -> str:
    """One field rendered like :func:`render_fields` does, with the line of any error (the editor's preview)."""
    try:
        return _compiled(field == "html", source).render(context)
    except TemplateSyntaxError as error:
        raise RenderError(channel, field, error.message or "syntax error", error.lineno) from None
    except TemplateError as error:
        raise RenderError(channel, field, error.message or str(error), error_line(error)) from None


def unknown_variables(source: str) -> set[str]:
    """Names a (syntactically valid) template reads besides recipient, data, notification and Jinja's globals."""
    return referenced_variables(source) - ALLOWED_VARIABLES - set(_text_env.globals)


# -- rendering: compiled once per template version and channel, rendered per recipient --------

class CompiledVariant:
    """A channel variant parsed once; ``render`` gives the same fields and errors as ``render_fields``.

    ``render_fields`` parses each field on every call, which for a million
    recipients is most of the work; here a batch parses once.
    """

    def __init__(self, channel: str, variant: dict):
        self.channel = channel
        self.fields: list[tuple[str, object]] = []
        for field in CHANNEL_FIELDS[channel]:
            source = variant.get(field)
            if source is None:
                if (channel, field) not in OPTIONAL_FIELDS:
                    self.fields.append((field, RenderError(channel, field, "missing")))
                continue
            try:
                compiled = (_html_env if field == "html" else _text_env).from_string(source)
            except TemplateSyntaxError as error:
                compiled = RenderError(channel, field, error.message or "syntax error", error.lineno)
            self.fields.append((field, compiled))

    def render(self, context: dict) -> dict[str, str]:
        rendered = {}
        for field, compiled in self.fields:
            if isinstance(compiled, RenderError):
                raise compiled
            try:
                value = compiled.render(context)
            except UndefinedError as error:
                raise RenderError(self.channel, field, error.message or "undefined variable") from None
            except TemplateError as error:
                raise RenderError(self.channel, field, str(error)) from None
            if not value.strip() and field != "html":
                raise RenderError(self.channel, field, "rendered empty")
            limit = FIELD_LIMITS.get((self.channel, field))
            if limit and len(value) > limit:
                raise RenderError(self.channel, field, f"{len(value)} characters, over the limit of {limit}")
            rendered[field] = value
        return rendered


class VersionRenderer:
    """Picks the variant for a (channel, locale) like ``pick_variant`` and keeps it compiled."""

    def __init__(self, variants: dict, default_locale: str):
        self.variants, self.default_locale = variants, default_locale
        self._compiled: dict[tuple[str, str | None], CompiledVariant | None] = {}

    def render(self, channel: str, locale: str | None, context: dict) -> dict[str, str]:
        cache_key = (channel, locale)
        if cache_key not in self._compiled:
            variant = pick_variant(self.variants, channel, locale, self.default_locale)
            self._compiled[cache_key] = CompiledVariant(channel, variant) if variant else None
        compiled = self._compiled[cache_key]
        if compiled is None:
            raise RenderError(channel, "template", f"the template has no {channel} variant")
        return compiled.render(context)


_renderers: dict[str, VersionRenderer] = {}


def renderer_for(template, version_number: int) -> VersionRenderer:
    """The compiled renderer of a template (``app.models.Template``) version.

    Versions are immutable, so a worker keeps each one compiled for as long as it lives.

    The cache is keyed by the version's content, not its ids: SQLite may hand a
    deleted template's id to the next one, and a stale compiled copy would send
    the old text.
    """
    version = template.version(version_number)
    if version is None:
        raise LookupError(f"template {template.key!r} has no version {version_number}")
    cache_key = json.dumps([version.variants, template.default_locale], sort_keys=True)
    if cache_key not in _renderers:
        if len(_renderers) > 64:
            _renderers.clear()
        _renderers[cache_key] = VersionRenderer(version.variants, template.default_locale)
    return _renderers[cache_key]
