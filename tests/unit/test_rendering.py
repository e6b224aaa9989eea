import pytest

from app.delivery.rendering import RenderError, inline_variant, locale_chain, pick_variant, render_fields, syntax_errors

CONTEXT = {
    "recipient": {"id": "ana", "attributes": {"balance": 12.5}},
    "data": {"amount": "42.00"},
    "notification": {"title": "Hi <b>", "body": "Tom & Jerry {{ 7*7 }}"},
}


def test_locale_falls_back_from_region_to_language_to_default():
    assert locale_chain("pt-BR", "en") == ["pt-BR", "pt", "en"]
    variants = {"en": {"sms": {"text": "hello"}}, "pt": {"sms": {"text": "olá"}}}
    assert pick_variant(variants, "sms", "pt-BR", "en") == {"text": "olá"}
    assert pick_variant(variants, "sms", "ja", "en") == {"text": "hello"}
    assert pick_variant(variants, "email", "en", "en") is None


def test_web_push_uses_the_push_variant():
    assert pick_variant({"en": {"push": {"title": "t", "body": "b"}}}, "web_push", "en", "en") == {
        "title": "t",
        "body": "b",
    }


def test_renders_recipient_attributes_and_data():
    out = render_fields("sms", {"text": "Balance {{ recipient.attributes.balance }}, paid {{ data.amount }}"}, CONTEXT)
    assert out == {"text": "Balance 12.5, paid 42.00"}


def test_undefined_variable_is_an_error_never_a_blank():
    with pytest.raises(RenderError) as error:
        render_fields("sms", {"text": "Hi {{ recipient.nickname }}"}, CONTEXT)
    assert error.value.field == "text" and "nickname" in error.value.message


def test_syntax_error_reports_its_line():
    with pytest.raises(RenderError) as error:
        render_fields("sms", {"text": "line one\n{% if %}"}, CONTEXT)
    assert error.value.line == 2
    assert syntax_errors("ok\n{{ broken").startswith("line 2")
    assert syntax_errors("{{ fine }}") is None


def test_sandbox_blocks_attribute_escape():
    with pytest.raises(RenderError):
        render_fields("sms", {"text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}, CONTEXT)


def test_sms_over_ten_segments_is_refused():
    with pytest.raises(RenderError) as error:
        render_fields("sms", {"text": "x" * 1601}, CONTEXT)
    assert "limit of 1600" in error.value.message


def test_literal_title_and_body_are_not_template_code_and_are_escaped_in_html():
    out = render_fields("email", inline_variant("email", "Hi <b>", "Tom & Jerry {{ 7*7 }}"), CONTEXT)
    assert out["subject"] == "Hi <b>"
    assert out["text"] == "Tom & Jerry {{ 7*7 }}"
    assert out["html"] == "<p>Tom &amp; Jerry {{ 7*7 }}</p>"


@pytest.mark.parametrize(
    "variant",
    [
        {"subject": "Spring is here", "html": "<p>Hi {{ recipient.id }}</p>", "text": "New colours\n"},
        {"subject": "a {# note #} b", "html": "<b>&amp;</b>", "text": "{% raw %}{{ x }}{% endraw %}"},
        {"subject": "   ", "html": "<p>x</p>", "text": "y"},
    ],
)
def test_a_compiled_variant_renders_static_fields_once_and_exactly_as_render_fields(variant):
    from app.delivery.rendering import CompiledVariant

    compiled = CompiledVariant("email", variant)
    assert isinstance(dict(compiled.fields)["html" if "{{" not in variant["html"] else "subject"], str)
    context = {"recipient": {"id": "u<1"}}
    try:
        expected = render_fields("email", variant, context)
    except RenderError as error:
        with pytest.raises(RenderError) as raised:
            compiled.render(context)
        assert str(raised.value) == str(error)
        return
    assert compiled.render(context) == expected
