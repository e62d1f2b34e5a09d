"""Hostile exports that used to crash the audit (issue 15, item 15): each ends in one clear error, or is drawn literally.

- a COCO JSON nested 100,000 deep (RecursionError in the JSON decoder), or
  holding an integer of more than 4,300 digits (Python's int conversion
  limit, a ValueError), bare or zipped: an AuditError naming the file;
- an attribute value, attribute name or label such as `$x^$`: matplotlib would
  read it as mathtext and fail while drawing the chart; every text is drawn
  as written.
"""

import json

import matplotlib.text
import pytest
from support.audit_exports import Image, coco_json, images_xml, zipped

from audit.cli import main
from audit.errors import AuditError
from audit.exports import load_export

DEEP = 100_000
HUGE_INTEGER = "9" * 4_400


def deep_coco() -> bytes:
    """A COCO instances file whose `info` holds lists nested DEEP deep."""
    document = json.loads(coco_json([Image("a.jpg", shapes=[("car", {"lighting": "day"})])]))
    text = json.dumps(document)
    return text.replace('"info": {}', '"info": ' + "[" * DEEP + "]" * DEEP).encode()


def huge_integer_coco() -> bytes:
    """A COCO instances file whose image id is an integer of 4,400 digits."""
    text = coco_json([Image("a.jpg", shapes=[("car", {"lighting": "day"})])]).decode()
    return text.replace('"id": 1, "width"', f'"id": {HUGE_INTEGER}, "width"', 1).encode()


CASES = {"deep": (deep_coco, "nested too deeply"), "huge-integer": (huge_integer_coco, "more than 4300 digits")}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
@pytest.mark.parametrize("packed", [False, True], ids=["json", "zip"])
def test_hostile_coco_json_is_a_clear_error_naming_the_file(tmp_path, case, packed):
    build, message = CASES[case]
    content = build()
    if packed:
        path = tmp_path / "coco.zip"
        path.write_bytes(zipped({"annotations/instances_default.json": content}))
    else:
        path = tmp_path / "instances_default.json"
        path.write_bytes(content)
    with pytest.raises(AuditError, match=message) as raised:
        load_export(str(path))
    assert str(raised.value).startswith(str(path))
    if packed:
        assert "annotations/instances_default.json" in str(raised.value)


def test_the_module_command_reports_hostile_json_in_one_line(tmp_path, capsys):
    path = tmp_path / "instances_default.json"
    path.write_bytes(deep_coco())
    code = main(["report", str(path), "--per-object", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and err.count("\n") == 1
    assert err.startswith(f"error: {path}: not valid JSON: nested too deeply")


MATH = ["$x^$", "$\\frac$", "a $b$ c", "$$", "\\$5", "100 $"]


def test_values_names_and_labels_that_look_like_mathtext_are_drawn_literally(tmp_path):
    values = {"$x^$": MATH}
    images = [Image(f"a{i}.jpg", tags=[("$car^$" if i % 2 else "car", {"$x^$": MATH[i % len(MATH)]})]) for i in range(60)]
    export = tmp_path / "annotations.xml"
    export.write_bytes(images_xml(images, labels=["car", "$car^$"], attributes=values))
    out = tmp_path / "out"
    assert main(["report", str(export), "--out", str(out)]) == 0
    assert len(list((out / "charts").iterdir())) == 1
    assert "$x^$" in (out / "report.html").read_text()


def test_every_text_of_the_chart_is_plain_text():
    from audit.charts import association_chart, association_figure

    table = {"$car^$": {value: 3 + index for index, value in enumerate(MATH)}, "car": dict.fromkeys(MATH, 5)}
    figure = association_figure("$x^$", "condition", table, MATH, True, 0.001, 0.5)
    try:
        figure.canvas.draw()
        texts = [text for text in figure.findobj(matplotlib.text.Text) if text.get_text()]
        drawn = {text.get_text() for text in texts}
        assert set(MATH) <= drawn and "$car^$ (n=33)" in drawn
        assert not [text.get_text() for text in texts if text.get_parse_math() or text.get_usetex()]
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)
    assert association_chart("$x^$", "condition", table, MATH, False).startswith(b"\x89PNG")


NESTED = "<x>" * DEEP + "</x>" * DEEP
DEEP_XML = {
    "top-level": f"<annotations><version>1.1</version>{NESTED}</annotations>",
    "in-an-image": f'<annotations><version>1.1</version><image name="a.jpg">{NESTED}<tag label="car"/></image></annotations>',
    "in-a-shape": f'<annotations><version>1.1</version><image name="a.jpg"><box label="car">{NESTED}</box></image></annotations>',
    "in-the-meta": f"<annotations><version>1.1</version><meta><task>{NESTED}</task></meta></annotations>",
}


@pytest.mark.parametrize("document", DEEP_XML.values(), ids=list(DEEP_XML))
def test_xml_nested_100000_deep_is_read_without_recursion(tmp_path, document):
    # The streamed reader keeps no more than the open elements, and drops each as it ends.
    path = tmp_path / "annotations.xml"
    path.write_text(document)
    export = load_export(str(path))
    assert [frame.name for frame in export.frames] == (["a.jpg"] if "image" in document else [])


def test_an_xml_integer_over_4300_digits_is_a_clear_error(tmp_path):
    path = tmp_path / "annotations.xml"
    path.write_text(f'<annotations><version>1.1</version><track label="car"><box frame="{HUGE_INTEGER}"/></track></annotations>')
    with pytest.raises(AuditError, match=r"malformed <box> element: an integer has more than 4300 digits$"):
        load_export(str(path))
