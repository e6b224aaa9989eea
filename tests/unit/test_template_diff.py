"""Version diffs: which fields changed, and the side-by-side line rows the HTML table shows."""

from app.console.template_diff import DiffLine, diff_text, diff_variants


def test_changed_line_pairs_old_and_new_with_their_line_numbers():
    rows = diff_text(
        "Hi {{ recipient.id }}\nYour balance is low.\nBye",
        "Hi {{ recipient.id }}\nYour balance is {{ data.amount }}.\nBye",
    )
    assert rows == (
        DiffLine("equal", 1, "Hi {{ recipient.id }}", 1, "Hi {{ recipient.id }}"),
        DiffLine("replace", 2, "Your balance is low.", 2, "Your balance is {{ data.amount }}."),
        DiffLine("equal", 3, "Bye", 3, "Bye"),
    )


def test_added_and_removed_lines_leave_the_other_side_empty():
    assert diff_text("a\nb", "a\nb\nc")[-1] == DiffLine("insert", None, None, 3, "c")
    assert diff_text("a\nb\nc", "a\nc") == (
        DiffLine("equal", 1, "a", 1, "a"),
        DiffLine("delete", 2, "b", None, None),
        DiffLine("equal", 3, "c", 2, "c"),
    )
    assert diff_text("", "new") == (DiffLine("insert", None, None, 1, "new"),)


def test_only_changed_fields_are_listed_per_locale_and_channel():
    old = {"en": {"sms": {"text": "Hello"}, "in_app": {"title": "T", "body": "B"}}}
    new = {"en": {"sms": {"text": "Hello!"}, "in_app": {"title": "T", "body": "B"}}, "pt": {"sms": {"text": "Olá"}}}
    changes = diff_variants(old, new)
    assert [(c.locale, c.channel, c.field) for c in changes] == [("en", "sms", "text"), ("pt", "sms", "text")]
    assert changes[1].lines == (DiffLine("insert", None, None, 1, "Olá"),)


def test_a_removed_channel_shows_as_deleted_fields_and_identical_versions_have_no_diff():
    old = {"en": {"push": {"title": "Hey", "body": "Body"}}}
    assert [(c.channel, c.field, c.lines[0].kind) for c in diff_variants(old, {"en": {}})] == [
        ("push", "title", "delete"),
        ("push", "body", "delete"),
    ]
    assert diff_variants(old, old) == []
