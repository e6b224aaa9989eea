"""CSV import rows: parsed and validated one by one with the API's validators, errors named by line and column."""

import io

import pytest

from app.audiences.imports import TYPING_RULES, RowError, header_problems, parse_number, parse_row, read_rows


def rows_of(text: str):
    header, rows = read_rows(io.StringIO(text))
    return header, list(rows)


def test_valid_row_splits_profile_fields_from_attributes_and_parses_numbers():
    record, errors = parse_row(
        2,
        {
            "user_id": " u1 ",
            "email": "Ana@Example.com",
            "phone": "+14155552671",
            "timezone": "Asia/Singapore",
            "locale": "pt-BR",
            "balance": "20",
            "ratio": "0.5",
            "plan": "pro",
            "zip": "007x",
            "nickname": "",
        },
    )
    assert errors == []
    assert record.external_id == "u1"
    assert record.profile == {
        "email": "ana@example.com",
        "phone": "+14155552671",
        "timezone": "Asia/Singapore",
        "locale": "pt-BR",
    }
    assert record.attributes == {"balance": 20, "ratio": 0.5, "plan": "pro", "zip": "007x"}


@pytest.mark.parametrize(
    ("row", "field", "fragment"),
    [
        ({"user_id": ""}, "user_id", "required"),
        ({"user_id": "x" * 256}, "user_id", "longer than 255"),
        ({"user_id": "u", "email": "not-an-email"}, "email", "@"),
        ({"user_id": "u", "phone": "4155552671"}, "phone", "E.164"),
        ({"user_id": "u", "timezone": "Mars/Olympus"}, "timezone", "unknown IANA time zone"),
        ({"user_id": "u", "locale": "english"}, "locale", "en or pt-BR"),
    ],
)
def test_invalid_cells_name_line_column_and_problem(row, field, fragment):
    record, errors = parse_row(7, row)
    assert record is None
    assert len(errors) == 1 and errors[0].line == 7 and errors[0].field == field and fragment in errors[0].message


def test_a_row_with_several_bad_cells_reports_each_and_is_skipped_whole():
    record, errors = parse_row(3, {"user_id": "u", "email": "bad", "timezone": "Nowhere/Land", "balance": "5"})
    assert record is None
    assert {e.field for e in errors} == {"email", "timezone"}


def test_numbers_parse_only_when_the_whole_cell_is_a_number():
    assert parse_number("42") == 42 and parse_number("-3") == -3 and parse_number("1e3") == 1000.0
    assert parse_number("4.50") == 4.5
    assert parse_number("nan") == "nan" and parse_number("12 apples") == "12 apples" and parse_number("inf") == "inf"


@pytest.mark.parametrize("cell", ["007", "02134", "00.5", "1,5", "true", "٤٢", "9007199254740993", "1e300", "+"])
def test_codes_with_leading_zeros_other_digits_and_numbers_beyond_two_to_the_53_stay_text(cell):
    assert parse_number(cell) == cell


def test_the_typing_rules_are_on_the_import_page_as_they_are_applied():
    assert parse_number("9007199254740992") == 2**53 and parse_number(".5") == 0.5 and parse_number("0") == 0
    assert "007" in TYPING_RULES and "9,007,199,254,740,992" in TYPING_RULES


def test_line_numbers_count_the_header_blank_lines_and_quoted_newlines():
    header, rows = rows_of('user_id,note\nu1,hi\n\nu2,"two\nlines"\nu3,ok\n')
    assert header == ["user_id", "note"]
    assert [(line, row["user_id"]) for line, row in rows] == [(2, "u1"), (4, "u2"), (6, "u3")]


def test_short_and_long_rows_are_told_apart():
    _header, rows = rows_of("user_id,email,plan\nu1\nu2,a@example.com,pro,extra\n")
    (line1, short), (line2, long) = rows
    assert parse_row(line1, short) == (parse_row(line1, short)[0], [])
    assert parse_row(line2, long)[1] == [RowError(3, "", "has more cells than the header has columns")]


def test_header_must_name_user_id_once_and_every_column():
    assert header_problems(["user_id", "email"]) == []
    assert header_problems([]) and "empty" in header_problems([])[0]
    assert header_problems(["email"]) == ["The first line has no user_id column."]
    assert header_problems(["user_id", "plan", "plan"]) == ["Columns named twice: plan."]
    assert header_problems(["user_id", ""]) == ["A column has no name in the first line."]
