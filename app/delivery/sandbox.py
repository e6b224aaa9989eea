"""Jinja's sandbox with a budget: one render may spend so much CPU time and build values so large.

A marketer's template must not hold a worker: ``{% for x in range(100000) %}``
nested twice is ten billion iterations, ``"x" * 10**9`` a gigabyte. The
budget is enforced cooperatively, from hooks the compiled template passes
through anyway -- every ``for`` loop's items, every call (macros, ``loop()``,
``caller()``, methods), every filter, every ``*``/``**``/``%``/``+``/``~`` and
every chunk of output -- so it holds in any thread or greenlet and never
touches a signal (RQ's job timeout owns SIGALRM; gunicorn's gevent workers
run every request on the main thread). Each hook reads a cheap wall clock and,
only once the wall-clock budget has passed, the thread's CPU time, so a render
that was merely descheduled on a busy machine is not failed.

Time alone cannot stop a single C call that builds a huge value (``"x" *
10**9`` is one allocation), so operations that multiply sizes are checked
*before* they run (``*``, ``**``, ``center``, ``join``, ``replace``, format
widths...) and every value a hook sees is checked after: no string, list or
number a template builds grows past the output limit.

Over budget raises :class:`OverBudget`; ``app.delivery.rendering`` turns it
(and any other exception escaping Jinja) into a ``RenderError``.
"""

from __future__ import annotations

import gc
import operator
import re
import threading
import weakref
from functools import wraps
from itertools import islice
from time import perf_counter, thread_time

from jinja2 import filters as jinja_filters
from jinja2 import pass_environment, pass_eval_context
from jinja2.compiler import CodeGenerator
from jinja2.runtime import Context, new_context
from jinja2.sandbox import ImmutableSandboxedEnvironment

DEFAULT_TIMEOUT_MS = 200
DEFAULT_MAX_BYTES = 256 * 1024
# Numbers a template may build, in bits (~20,000 decimal digits; Python prints at most 4,300).
MAX_INT_BITS = 65_536
# Loop items between two looks at the clock.
ITEMS_PER_CHECK = 256


class OverBudget(Exception):
    """A render went over its time or size budget; the message says which, for the marketer."""


def describe_size(limit: int) -> str:
    return f"{limit // 1024} KB" if limit % 1024 == 0 else f"{limit:,} bytes"


OLDEST_GENERATION = 2


class Budget:
    """What one render may still spend. Create it right before rendering: the clock starts then.

    The first full collection of the heap during the render is not charged (:func:`_give_back_full_collection`).
    """

    __slots__ = ("timeout_ms", "max_bytes", "wall_deadline", "cpu_deadline", "message", "collection", "forgiven")

    def __init__(
        self,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        within: Budget | None = None,
        message: str | None = None,
    ):
        """``within``: a larger budget this one is part of (a preview request's), whose deadline also applies."""
        self.timeout_ms, self.max_bytes = timeout_ms, max_bytes
        self.message = message or f"rendering took longer than {timeout_ms} ms"
        self.wall_deadline = perf_counter() + timeout_ms / 1000
        self.cpu_deadline = thread_time() + timeout_ms / 1000
        if within is not None and within.cpu_deadline < self.cpu_deadline:
            self.wall_deadline = min(self.wall_deadline, within.wall_deadline)
            self.cpu_deadline, self.message = within.cpu_deadline, within.message
        self.collection: tuple[float, float] | None = None
        self.forgiven = False

    def give_back(self, wall: float, cpu: float) -> None:
        self.wall_deadline += wall
        self.cpu_deadline += cpu
        self.forgiven = True

    def check_time(self) -> None:
        if perf_counter() > self.wall_deadline and thread_time() > self.cpu_deadline:
            raise OverBudget(self.message)

    def check_size(self, size: int, what: str = "a value") -> None:
        if size > self.max_bytes:
            raise OverBudget(f"{what} over {describe_size(self.max_bytes)}")


_active = threading.local()  # greenlet-local under gevent's monkey-patching
_UNLIMITED_TIME = Budget(timeout_ms=10**12)  # for compile-time constant folding, outside any render


def _give_back_full_collection(phase: str, info: dict) -> None:
    """Extend the render in progress by its first full collection of the heap.

    One of a large worker's heap takes hundreds of milliseconds of CPU whatever the template is, and must not fail
    the notification it happened to interrupt (CI once failed one of 2,500 that way). Only the first is given back:
    a template that makes the collector run again and again pays for the rest, as for the young collections its
    own garbage causes.
    """
    budget = getattr(_active, "budget", None)
    if info["generation"] != OLDEST_GENERATION or budget is None or budget.forgiven:
        return
    if phase == "start":
        budget.collection = (perf_counter(), thread_time())
    elif budget.collection is not None:
        wall, cpu = budget.collection
        budget.give_back(perf_counter() - wall, thread_time() - cpu)


gc.callbacks.append(_give_back_full_collection)


def current_budget() -> Budget:
    return getattr(_active, "budget", None) or _UNLIMITED_TIME


class spending:
    """``with spending(budget):`` makes ``budget`` the one the hooks of this thread charge."""

    def __init__(self, budget: Budget):
        self.budget = budget

    def __enter__(self) -> Budget:
        self.outer = getattr(_active, "budget", None)
        _active.budget = self.budget
        return self.budget

    def __exit__(self, *exc) -> None:
        _active.budget = self.outer


def check_value(value, budget: Budget):
    """``value`` itself, unless it is a string, sequence or number larger than the budget allows."""
    if isinstance(value, (str, list, tuple, dict, set)):
        budget.check_size(len(value))
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise OverBudget(f"a number over {MAX_INT_BITS:,} bits")
    return value


def guarded_items(iterable, budget: Budget):
    """The items of a ``for`` loop, looking at the clock every few of them."""
    for count, item in enumerate(iterable):
        if not count % ITEMS_PER_CHECK:
            budget.check_time()
        yield item


# -- checks made before an operation builds its result ---------------------------------------

_SEQUENCES = (str, list, tuple)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*:([^{}]*)(\{)?")


def check_repeat(left, right, budget: Budget) -> None:
    """``"x" * n`` and ``n * [..]``: the result's length, before it is allocated."""
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, _SEQUENCES) and isinstance(count, int):
            budget.check_size(len(sequence) * max(count, 0))
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise OverBudget(f"a number over {MAX_INT_BITS:,} bits")


def check_power(base, exponent) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
            raise OverBudget(f"a number over {MAX_INT_BITS:,} bits")


def check_format_string(template: str, budget: Budget) -> None:
    """Field widths and precisions in a ``%`` or ``str.format`` string: ``%999999999s`` is a gigabyte."""
    for width, precision in _PERCENT_SPEC.findall(template):
        for number in (width, precision):
            if number == "*":
                raise OverBudget("a '*' width in a format string is not allowed")
            if number:
                budget.check_size(int(number), "a format width")
    for spec, nested in _BRACE_SPEC.findall(template):
        if nested:
            raise OverBudget("a nested width in a format string is not allowed")
        for number in re.findall(r"\d+", spec):
            budget.check_size(int(number), "a format width")


def check_method_call(function, args, budget: Budget) -> None:
    """String methods that make a result much larger than their inputs."""
    owner, name = getattr(function, "__self__", None), getattr(function, "__name__", "")
    if not isinstance(owner, str):
        return
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        budget.check_size(args[0])
    elif name == "expandtabs":
        budget.check_size(len(owner) + owner.count("\t") * (args[0] if args and isinstance(args[0], int) else 8))
    elif name == "replace" and len(args) >= 2:
        check_replace(owner, args[0], args[1], budget)
    elif name == "join" and args and isinstance(args[0], _SEQUENCES):
        budget.check_size(len(args[0]) * len(owner))


def check_replace(text, old, new, budget: Budget) -> None:
    text, old, new = str(text), str(old), str(new)
    occurrences = text.count(old) if old else len(text) + 1
    budget.check_size(len(text) + occurrences * len(new))


# -- filters that can multiply sizes, checked first, then handed to Jinja's own -----------------


def bounded_center(value, width=80):
    current_budget().check_size(width if isinstance(width, int) else 0)
    return jinja_filters.do_center(value, width)


def bounded_indent(s, width=4, first=False, blank=False):
    prefix_length = len(width) if isinstance(width, str) else int(width)
    current_budget().check_size(len(str(s)) + (str(s).count("\n") + 1) * prefix_length)
    return jinja_filters.do_indent(s, width, first, blank)


@pass_eval_context
def bounded_replace(eval_ctx, s, old, new, count=None):
    check_replace(s, old, new, current_budget())
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def bounded_join(eval_ctx, value, d="", attribute=None):
    items = list(value)
    current_budget().check_size(len(items) * len(str(d)))
    return jinja_filters.do_join(eval_ctx, items, d, attribute)


def bounded_format(value, *args, **kwargs):
    check_format_string(str(value), current_budget())
    return jinja_filters.do_format(value, *args, **kwargs)


@pass_environment
def bounded_wordwrap(environment, s, width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True):
    lines = len(str(s)) // max(int(width), 1) + str(s).count("\n") + 1
    current_budget().check_size(len(str(s)) + lines * len(wrapstring or environment.newline_sequence))
    return jinja_filters.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


def bounded_batch(value, linecount, fill_with=None):
    current_budget().check_size(linecount if isinstance(linecount, int) else 0, "a batch size")
    return jinja_filters.do_batch(value, linecount, fill_with)


def bounded_slice(value, slices, fill_with=None):
    current_budget().check_size(slices if isinstance(slices, int) else 0, "a slice count")
    return jinja_filters.do_slice(value, slices, fill_with)


SIZE_CHECKED_FILTERS = {
    "center": bounded_center,
    "indent": bounded_indent,
    "replace": bounded_replace,
    "join": bounded_join,
    "format": bounded_format,
    "wordwrap": bounded_wordwrap,
    "batch": bounded_batch,
    "slice": bounded_slice,
}


def budgeted_filter(function):
    """A filter that looks at the clock before it runs and checks the size of what it returns."""

    @wraps(function)  # keeps Jinja's pass_context / pass_environment marker
    def budgeted(*args, **kwargs):
        budget = current_budget()
        budget.check_time()
        return check_value(function(*args, **kwargs), budget)

    return budgeted


# -- the environment and its code generator ---------------------------------------------------


class BudgetedCodeGenerator(CodeGenerator):
    """Compiles ``for`` loops to iterate through ``environment.loop_items`` and ``~`` through ``environment.concat_checked``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loop_iterables: set[int] = set()

    def visit_For(self, node, frame):
        self.loop_iterables.add(id(node.iter))
        super().visit_For(node, frame)

    def visit(self, node, *args, **kwargs):
        if id(node) not in self.loop_iterables:
            return super().visit(node, *args, **kwargs)
        self.write("environment.loop_items(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def visit_Concat(self, node, frame):
        self.write("environment.concat_checked(")
        super().visit_Concat(node, frame)
        self.write(")")


_BINOPS = {"*": operator.mul, "**": operator.pow, "%": operator.mod, "+": operator.add}


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox (immutable: no ``list.append`` doubling) with every hook charging the current budget."""

    code_generator_class = BudgetedCodeGenerator
    intercepted_binops = frozenset(_BINOPS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.globals.pop("lipsum", None)  # n paragraphs in a pure-Python loop no hook can see
        self.filters.update(SIZE_CHECKED_FILTERS)
        self.filters = {name: budgeted_filter(function) for name, function in self.filters.items()}

    def call_binop(self, context, operator_name, left, right):
        budget = current_budget()
        budget.check_time()
        if operator_name == "*":
            check_repeat(left, right, budget)
        elif operator_name == "**":
            check_power(left, right)
        elif operator_name == "%" and isinstance(left, str):
            check_format_string(left, budget)
        elif operator_name == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            budget.check_size(len(left) + len(right))
        return check_value(_BINOPS[operator_name](left, right), budget)

    def call(__self, __context, __obj, *args, **kwargs):  # Jinja's own spelling of the parameters
        budget = current_budget()
        budget.check_time()
        check_method_call(__obj, args, budget)
        return check_value(super().call(__context, __obj, *args, **kwargs), budget)

    def wrap_str_format(self, value):
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            check_format_string(value.__self__, current_budget())
        return wrapped

    def loop_items(self, iterable):
        return guarded_items(iterable, current_budget())

    def concat_checked(self, value):
        return check_value(value, current_budget())


_flat_globals: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _new_context(template, context: dict) -> Context:
    """``template.new_context(context)``, its globals (a ChainMap Jinja walks in Python twice) flattened once."""
    if (flat := _flat_globals.get(template)) is None:
        flat = _flat_globals[template] = dict(template.globals)
    return new_context(template.environment, template.name, template.blocks, {**flat, **context}, True, flat)


def render_within(template, context: dict, budget: Budget) -> str:
    """``template.render(context)``, streamed so that neither time nor output may run past ``budget``. Chunks are
    taken a batch at a time (C-level ``islice``/``sum``): a normal render's overhead is one pass of the loop below."""
    outer = getattr(_active, "budget", None)
    _active.budget = budget
    try:
        chunks, size = [], 0
        stream = template.root_render_func(_new_context(template, context))
        while batch := list(islice(stream, ITEMS_PER_CHECK)):
            size += sum(map(len, batch))
            if size > budget.max_bytes:
                raise OverBudget(f"output over {describe_size(budget.max_bytes)}")
            chunks += batch
            budget.check_time()
    except Exception:  # noqa: BLE001 -- re-raised by Jinja with the template's lines in the traceback
        template.environment.handle_exception()
    finally:
        _active.budget = outer
    text = "".join(chunks)
    if size * 4 > budget.max_bytes:  # UTF-8 takes up to 4 bytes a character
        budget.check_size(len(text.encode("utf-8", "surrogatepass")), "output")
    return text
