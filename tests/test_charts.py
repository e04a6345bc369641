"""The SVG chart builders: the numbers given are the numbers the SVG carries (titles and
``data-value``), the drawing is well-formed XML, and labels from alert data are escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from receiver.incidents import charts

SVG = "{http://www.w3.org/2000/svg}"
XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>&amp;'


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, not untrusted XML


def data(svg: str) -> list[dict[str, str]]:
    """Each datum: its series, category, value and title text."""
    out = []
    for g in parse(svg).iter(f"{SVG}g"):
        if "datum" not in (g.get("class") or "").split():
            continue
        title = g.find(f"{SVG}title")
        assert title is not None
        out.append({"series": g.get("data-series", ""), "category": g.get("data-category", ""),
                    "value": g.get("data-value", ""), "title": title.text or "",
                    "kind": g.get("data-kind", "")})
    return out


def test_grouped_bars_carry_each_value_in_title_and_data_value() -> None:
    """Every non-missing value is one datum whose title and data-value give that number."""
    svg = charts.bars("c", "MTTA", ["wk 03-02", "wk 03-09"],
                      [charts.Series("P1", (240.0, None)), charts.Series("P2", (30.5, 90.0))])
    got = {(d["series"], d["category"]): d for d in data(svg)}
    assert set(got) == {("P1", "wk 03-02"), ("P2", "wk 03-02"), ("P2", "wk 03-09")}
    assert got[("P1", "wk 03-02")]["value"] == "240"
    assert got[("P1", "wk 03-02")]["title"] == "P1 · wk 03-02: 240"
    assert got[("P2", "wk 03-02")]["value"] == "30.5"
    assert parse(svg).find(f"{SVG}title").text == "MTTA"  # type: ignore[union-attr]


def test_stacked_bars_scale_to_the_largest_total() -> None:
    """Stacked: the axis top covers the largest column total, not the largest value."""
    svg = charts.bars("c", "per day", ["a", "b"],
                      [charts.Series("P0", (3.0, 1.0)), charts.Series("P1", (4.0, 0.0))],
                      stacked=True)
    axis = [t.text for t in parse(svg).iter(f"{SVG}text")
            if t.text and re.fullmatch(r"\d+(\.\d+)?", t.text)]
    assert "10" in axis  # 3 + 4 = 7 -> nice top 10
    assert [d["value"] for d in data(svg)] == ["3", "4", "1", "0"]


def test_empty_chart_says_so() -> None:
    """No values: a message instead of bars, still a valid SVG with its title."""
    svg = charts.bars("c", "MTTR", ["wk"], [charts.Series("P1", (None,))], empty="Nothing.")
    assert data(svg) == [] and "Nothing." in svg
    assert parse(svg).get("id") == "c"


def test_hbars_carry_shown_text() -> None:
    """A horizontal bar's label, value and shown text are all in the SVG."""
    svg = charts.hbars("n", "Noisiest", [charts.Item("DiskFull", 12.0, "12 episodes"),
                                         charts.Item("AppDown", 3.0, "3 episodes")])
    d = data(svg)
    assert [(x["category"], x["value"]) for x in d] == [("DiskFull", "12"), ("AppDown", "3")]
    assert d[0]["title"].endswith("DiskFull: 12 episodes")
    texts = [t.text for t in parse(svg).iter(f"{SVG}text")]
    assert "12 episodes" in texts and "3 episodes" in texts


def test_timeline_marks_are_ordered_with_offsets() -> None:
    """Marks come out in time order; data-value is seconds from the first, title the time."""
    t0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    svg = charts.timeline("s", "Incident #1", [
        charts.Mark("resolved", "resolved", t0 + timedelta(minutes=22)),
        charts.Mark("alert_start", "alert started", t0),
        charts.Mark("job", "job #1 restart (succeeded)", t0 + timedelta(minutes=6),
                    t0 + timedelta(minutes=6, seconds=30)),
        charts.Mark("acknowledged", "acknowledged", t0 + timedelta(minutes=4)),
    ])
    d = data(svg)
    assert [x["kind"] for x in d] == ["alert_start", "acknowledged", "job", "resolved"]
    assert [x["value"] for x in d] == ["0", "240", "360", "1320"]
    assert d[1]["title"] == "acknowledged: 2026-03-02 10:04:00 UTC (+4m 00s)"
    assert "to 10:06:30 (30s)" in d[2]["title"]


def test_hostile_alert_name_is_escaped_everywhere() -> None:
    """A hostile alert name is text in every place it appears, never markup."""
    for svg in (charts.bars("c", XSS, [XSS], [charts.Series(XSS, (1.0,))]),
                charts.hbars("n", "t", [charts.Item(XSS, 1.0, XSS)]),
                charts.timeline("s", "t", [charts.Mark(XSS, XSS, datetime.now(UTC))])):
        assert "<script" not in svg and "<img" not in svg
        root = parse(svg)
        assert all(el.tag.startswith(SVG) for el in root.iter())
        assert {el.tag.removeprefix(SVG) for el in root.iter()} <= {
            "svg", "title", "text", "g", "rect", "line", "circle"}


# Characters XML 1.0 forbids are left out: the test reads the SVG with an XML parser, while
# browsers read it as HTML, where they are harmless.
LABELS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"),
                               exclude_characters="\ufffe\uffff"), max_size=80)


@settings(max_examples=150, deadline=None)
@given(names=st.lists(LABELS, min_size=1, max_size=6),
       values=st.lists(st.integers(0, 10_000), min_size=6, max_size=6))
@example(names=['"><svg onload=x>', "a&b", "</title><script>"], values=[1, 2, 3, 4, 5, 6])
@example(names=["]]><!--", "&#x3c;"], values=[0, 0, 0, 0, 0, 0])
def test_generated_labels_come_back_as_the_same_text(names: list[str],
                                                     values: list[int]) -> None:
    """Whatever the label text, the SVG parses, only chart elements appear, and each datum's
    category and title give back the label and its value exactly."""
    items = [charts.Item(n, float(v), f"{v} episodes") for n, v in zip(names, values[: len(names)], strict=True)]
    svg = charts.hbars("n", "Noisiest", items)
    root = parse(svg)
    assert {el.tag.removeprefix(SVG) for el in root.iter()} <= {
        "svg", "title", "text", "g", "rect", "line", "circle"}
    d = data(svg)
    assert [x["category"] for x in d] == names
    assert [x["value"] for x in d] == [str(v) for v in values[: len(names)]]
    assert all(x["title"] == f"Noisiest · {n}: {v} episodes"
               for x, n, v in zip(d, names, values[: len(names)], strict=True))


@given(value=st.floats(0, 1e9, allow_nan=False))
@example(value=5e-324)  # 10 ** -324 underflowed to 0, and so did the axis top
def test_nice_max_covers_the_value(value: float) -> None:
    """The axis top is above zero, at or above the largest value, and at most ten times it
    (or the smallest top)."""
    top = charts.nice_max(value)
    assert top > 0 and top >= value
    assert value == 0 or top <= 10 * max(value, charts.SMALLEST) * (1 + 1e-12)
