"""Render per-channel content from templates in Jinja's sandbox.

User-authored templates can read the recipient, their attributes and the
notification's ``data``; nothing else. An undefined variable is an error --
we would rather fail a delivery with a reason than send a blank message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from flask import current_app, g, has_app_context, has_request_context
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta, nodes

from app.channels import content_fields, field_limits, optional_fields, variant_sources
from app.delivery.sandbox import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT_MS,
    Budget,
    BudgetedSandbox,
    OverBudget,
    render_within,
)

# The fields each channel's variant provides, those it may leave out, and the longest rendered text a
# channel accepts: declared on the channel adapters (app/channels/).
CHANNEL_FIELDS = content_fields()
OPTIONAL_FIELDS = optional_fields()
FIELD_LIMITS = field_limits()

# A macro or loop calling itself, or thousands of nested brackets: Python's recursion limit, not a crash.
TOO_DEEP = "nested too deeply (a macro or loop calling itself, or too many brackets)"

_text_env = BudgetedSandbox(undefined=StrictUndefined, autoescape=False)
_html_env = BudgetedSandbox(undefined=StrictUndefined, autoescape=True)


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


# The editor's preview renders every field of every locale (up to 30 x 8) in one request; together they get
# this many renders' worth of time, so a page full of hostile fields still answers in about a second.
PREVIEW_RENDERS_PER_REQUEST = 5


def budget_settings() -> tuple[int, int]:
    """The app's ``RENDER_TIMEOUT_MS`` and ``RENDER_MAX_BYTES`` (the defaults outside an app)."""
    if not has_app_context():
        return DEFAULT_TIMEOUT_MS, DEFAULT_MAX_BYTES
    config = current_app.config
    return config.get("RENDER_TIMEOUT_MS", DEFAULT_TIMEOUT_MS), config.get("RENDER_MAX_BYTES", DEFAULT_MAX_BYTES)


def render_budget(within: Budget | None = None) -> Budget:
    """A fresh budget from the settings; the clock starts now."""
    timeout_ms, max_bytes = budget_settings()
    return Budget(timeout_ms, max_bytes, within)


def preview_request_budget() -> Budget | None:
    """The total all previewed fields of the current request share (None outside a request)."""
    if not has_request_context():
        return None
    if "render_preview_budget" not in g:
        timeout_ms, max_bytes = budget_settings()
        total_ms = timeout_ms * PREVIEW_RENDERS_PER_REQUEST
        g.render_preview_budget = Budget(
            total_ms, max_bytes, message=f"not rendered: the preview's {total_ms} ms for all fields ran out"
        )
    return g.render_preview_budget


def render_bounded(channel: str, field: str, template: Template | str, context: dict, budget: Budget) -> str:
    """One field within ``budget``. Every failure is a RenderError: a template's mistake, or its
    attempt to run too long or build too much, fails the delivery and never the worker or the page."""
    try:
        if isinstance(template, str):
            template = _compiled(field == "html", template)
        return render_within(template, context, budget)
    except TemplateSyntaxError as error:
        raise RenderError(channel, field, error.message or "syntax error", error.lineno) from None
    except TemplateError as error:
        raise RenderError(channel, field, error.message or str(error), error_line(error)) from None
    except OverBudget as error:
        raise RenderError(channel, field, str(error), error_line(error)) from None
    except RecursionError as error:
        raise RenderError(channel, field, TOO_DEEP, error_line(error)) from None
    except MemoryError as error:
        raise RenderError(channel, field, "out of memory", error_line(error)) from None
    except Exception as error:  # noqa: BLE001 -- OverflowError, TypeError, ZeroDivisionError... from template code
        raise RenderError(channel, field, f"{type(error).__name__}: {error}", error_line(error)) from None


def checked_field(channel: str, field: str, value: str) -> str:
    """A rendered field as a channel may send it: not empty, within the channel's length limit."""
    if not value.strip() and field != "html":
        raise RenderError(channel, field, "rendered empty")
    limit = FIELD_LIMITS.get((channel, field))
    if limit and len(value) > limit:
        raise RenderError(channel, field, f"{len(value)} characters, over the limit of {limit}")
    return value


def render_fields(channel: str, variant: dict, context: dict) -> dict[str, str]:
    """Render every field of a channel variant within one budget; raise RenderError naming the field and line."""
    rendered, budget = {}, render_budget()
    for field in CHANNEL_FIELDS[channel]:
        source = variant.get(field)
        if source is None:
            if (channel, field) in OPTIONAL_FIELDS:
                continue
            raise RenderError(channel, field, "missing")
        rendered[field] = checked_field(channel, field, render_bounded(channel, field, source, context, budget))
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
    except RecursionError:
        return f"line 1: {TOO_DEEP}"
    return None


def referenced_variables(source: str) -> set[str]:
    """Top-level names a template reads (``recipient``, ``data``...), for save-time checks (none if it cannot parse)."""
    try:
        return meta.find_undeclared_variables(_text_env.parse(source))
    except (TemplateSyntaxError, RecursionError):
        return set()


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
    """One field rendered like :func:`render_fields` does, within its own budget and the request's
    (the editor's preview)."""
    return render_bounded(channel, field, source, context, render_budget(within=preview_request_budget()))


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
            except RecursionError:
                compiled = RenderError(channel, field, TOO_DEEP)
            self.fields.append((field, _static_text(channel, field, source, compiled)))

    def render(self, context: dict) -> dict[str, str]:
        rendered, budget = {}, render_budget()
        for field, compiled in self.fields:
            if isinstance(compiled, RenderError):
                raise compiled
            if isinstance(compiled, str):  # static text: rendered once, when compiled
                rendered[field] = checked_field(self.channel, field, compiled)
                continue
            rendered[field] = checked_field(
                self.channel, field, render_bounded(self.channel, field, compiled, context, budget)
            )
        return rendered


def _static_text(channel: str, field: str, source: str, compiled):
    """A field with no Jinja in it (text only: a campaign's subject, its plain-text part) as the text it always
    renders to, so a batch renders it once instead of once per recipient; any other field as compiled."""
    if isinstance(compiled, RenderError):
        return compiled
    try:
        body = (_html_env if field == "html" else _text_env).parse(source).body
    except (TemplateSyntaxError, RecursionError):
        return compiled
    if not all(isinstance(n, nodes.Output) and all(isinstance(c, nodes.TemplateData) for c in n.nodes) for n in body):
        return compiled
    try:
        return render_bounded(channel, field, compiled, {}, render_budget())
    except RenderError:
        return compiled  # over the size budget: each render reports it as before


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
