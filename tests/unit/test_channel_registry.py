"""The channel registry (app/channels/) is the one place that knows what a channel is.

The adapters declare name, label, order, address field, platforms and the
rest once; everything else asks the registry. The source checks at the end
fail when a comparison with a channel name, or a spelled-out channel list,
creeps back into app/ or jobs/ outside app/channels/, or into a Jinja template.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

from jinja2 import Environment, nodes

from app import channels
from app.channels import base

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("app", "jobs")
TEMPLATES = ROOT / "templates"


def test_every_adapter_declares_what_the_registry_answers():
    for cls in channels.channel_classes():
        assert cls.label and isinstance(cls.order, int) and isinstance(cls.send_order, int), cls
        assert cls.content_fields, cls
        assert set(cls.field_limits) <= set(cls.content_fields), cls
        assert cls.optional_fields <= set(cls.content_fields), cls
        assert cls.template_fallback is None or cls.template_fallback in channels.channel_names(), cls
        assert not (cls.address_field and cls.platforms), f"{cls.name}: an address or devices, not both"
    names = channels.channel_names()
    assert len(set(channels.labels().values())) == len(names), "two channels share a label"
    assert len({cls.order for cls in channels.channel_classes()}) == len(names)
    assert len({cls.send_order for cls in channels.channel_classes()}) == len(names)


def test_labels_are_one_per_channel_everywhere():
    from app.console import forms_campaigns, forms_content

    assert channels.labels() == {
        "in_app": "In-app",
        "email": "Email",
        "sms": "SMS",
        "push": "Mobile push",
        "web_push": "Web push",
    }
    assert forms_campaigns.CHANNEL_LABELS == channels.labels()
    # The editor's mobile push variant also renders web push, so its label names both channels.
    assert forms_content.CHANNEL_LABELS["push"] == "Mobile push & Web push"
    assert forms_content.EDITOR_CHANNELS == ("in_app", "email", "sms", "push")


def test_api_enum_and_preference_grid_follow_the_registry():
    from app.inbox.preferences import grid
    from app.schemas import Channel

    assert get_args(Channel) == channels.channel_names() == ("in_app", "email", "sms", "push", "web_push")
    switches, rows = grid({"news"}, set(), {})
    assert tuple(cell.channel for cell in switches) == channels.preference_channels()
    assert tuple(cell.channel for cell in rows[0].cells) == channels.preference_channels()


def test_send_order_puts_instant_channels_first():
    assert channels.in_send_order(["email", "sms", "web_push", "in_app", "push", "fax"]) == [
        "in_app",
        "push",
        "web_push",
        "sms",
        "email",
    ]
    assert channels.in_list_order({"web_push", "email", "fax"}) == ["email", "web_push"]


def test_reachability_comes_from_address_columns_and_device_platforms():
    assert channels.address_fields() == {"email": "email", "sms": "phone"}
    assert channels.device_platforms() == {"push": {"ios", "android"}, "web_push": {"web"}}
    assert channels.reachable({}, set()) == {"in_app"}
    assert channels.reachable({"email": "a@example.com", "phone": None}, {"android"}) == {"in_app", "email", "push"}
    assert channels.reachable({"phone": "+14155552671"}, {"web", "ios"}) == {"in_app", "sms", "push", "web_push"}


def test_what_routing_and_rendering_ask_of_a_channel():
    assert channels.external_channels() == {"email", "sms", "push", "web_push"}
    assert not channels.is_external("in_app")
    assert channels.interrupting_channels() == {"sms", "push", "web_push"}
    assert [c for c in channels.channel_names() if channels.needs_marketing_opt_in(c)] == ["sms"]
    assert [c for c in channels.channel_names() if channels.offers_one_click_unsubscribe(c)] == ["email"]
    assert channels.variant_sources("web_push") == ("web_push", "push")
    assert channels.variant_sources("email") == ("email",)
    assert channels.optional_fields() == {("email", "text")}
    assert channels.canonical_address("email", " Ana@X.com ") == "ana@x.com"
    assert channels.canonical_address("sms", " +14155552671 ") == "+14155552671"
    assert channels.label_for("pager") == "pager"
    assert [c for c in channels.channel_names() if channels.channel_class(c).previews_as_mail] == ["email"]


# -- source checks -------------------------------------------------------------------------------


def channel_name_comparisons(source: str, names: frozenset[str]) -> list[int]:
    """Lines where a value is compared (==, !=, in, not in) with a channel name written as a string."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        for operand in (node.left, *node.comparators):
            literals = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            if any(isinstance(item, ast.Constant) and item.value in names for item in literals):
                lines.append(node.lineno)
                break
    return lines


def spelled_out_channel_lists(source: str, names: frozenset[str]) -> list[int]:
    """Lines holding a literal (tuple, list, set, dict keys) that names every channel."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        items = {ast.Tuple: "elts", ast.List: "elts", ast.Set: "elts", ast.Dict: "keys"}.get(type(node))
        if items:
            written = {item.value for item in getattr(node, items) if isinstance(item, ast.Constant)}
            if names <= written:
                lines.append(node.lineno)
    return lines


def _findings(check) -> dict[str, list[int]]:
    names = frozenset(channels.channel_names())
    found = {}
    for path in sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("app/channels/"):
            continue
        lines = check(path.read_text(), names)
        if lines:
            found[relative] = lines
    return found


def template_channel_name_comparisons(source: str, names: frozenset[str]) -> list[int]:
    """Lines of a Jinja template comparing a value (==, !=, in, not in) with a channel name written as a string."""
    lines = []
    for node in Environment().parse(source).find_all(nodes.Compare):
        for operand in (node.expr, *(op.expr for op in node.ops)):
            literals = operand.items if isinstance(operand, (nodes.Tuple, nodes.List)) else [operand]
            if any(isinstance(item, nodes.Const) and item.value in names for item in literals):
                lines.append(node.lineno)
                break
    return lines


def template_channel_lists(source: str, names: frozenset[str]) -> list[int]:
    """Lines of a Jinja template holding a literal tuple, list or dict that names every channel."""
    lines = []
    for node in Environment().parse(source).find_all((nodes.Tuple, nodes.List, nodes.Dict)):
        items = [pair.key for pair in node.items] if isinstance(node, nodes.Dict) else node.items
        if names <= {item.value for item in items if isinstance(item, nodes.Const)}:
            lines.append(node.lineno)
    return lines


def _template_findings(check) -> dict[str, list[int]]:
    names = frozenset(channels.channel_names())
    found = {}
    for path in sorted(TEMPLATES.rglob("*.html")):
        lines = check(path.read_text(), names)
        if lines:
            found[path.relative_to(ROOT).as_posix()] = lines
    return found


def test_the_source_checks_catch_what_they_look_for():
    names = frozenset({"sms", "push"})
    assert channel_name_comparisons('if channel == "sms":\n    pass\n', names) == [1]
    assert channel_name_comparisons('x = c in ("push", "other")\n', names) == [1]
    assert channel_name_comparisons('x = "push" not in found\n', names) == [1]
    assert channel_name_comparisons('x = field == "text"\nsend("sms")\n', names) == []
    assert spelled_out_channel_lists('ORDER = ("push", "sms")\nLABELS = {"sms": 1, "push": 2}\n', names) == [1, 2]
    assert spelled_out_channel_lists('x = ["push"]\n', names) == []
    assert template_channel_name_comparisons('{% if shown.channel == "sms" %}x{% endif %}', names) == [1]
    assert template_channel_name_comparisons("<p>\n{{ 'a' if c != 'push' else 'b' }}</p>", names) == [2]
    assert template_channel_name_comparisons('{% for c in cs if c in ("push", "fax") %}{% endfor %}', names) == [1]
    assert template_channel_name_comparisons('{% if "sms" not in sent %}{% endif %}', names) == [1]
    assert template_channel_name_comparisons('{% if name == "text" %}{{ "sms" }}{% endif %}', names) == []
    assert template_channel_lists(
        '{% for c in ("push", "sms") %}{% endfor %}{% set x = {"sms": 1, "push": 2} %}', names
    ) == [1, 1]
    assert template_channel_lists('{% for c in ["push"] %}{% endfor %}', names) == []


def test_nothing_outside_the_registry_compares_a_value_to_a_channel_name():
    assert _findings(channel_name_comparisons) == {}, "ask app.channels (the registry) instead"


def test_no_template_compares_a_value_to_a_channel_name():
    assert _template_findings(template_channel_name_comparisons) == {}, (
        "pass the template a flag or attribute from the registry (app.channels) instead"
    )


def test_no_template_spells_out_the_channel_list():
    assert _template_findings(template_channel_lists) == {}, "pass channel_names() or labels() to the template"


def test_the_channel_list_is_spelled_out_only_in_the_registry():
    assert _findings(spelled_out_channel_lists) == {}, "use app.channels.channel_names() and friends"


def test_registry_functions_are_exported_from_the_package():
    public = [
        name
        for name in vars(base)
        if not name.startswith("_")
        and callable(getattr(base, name))
        and getattr(getattr(base, name), "__module__", None) == base.__name__
    ]
    missing = sorted(set(public) - set(channels.__all__) - {"Channel"})
    assert missing == [], "import them from app.channels so the adapters are registered first"
