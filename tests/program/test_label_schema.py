"""components/label_schema.py: the `projects` config value, checked and turned into CVAT labels."""

import json

import pytest

from components.label_schema import (
    LABEL_TYPES,
    MAX_DEPTH,
    MAX_JSON_BYTES,
    Attribute,
    Label,
    Project,
    cvat_labels,
    load_json,
    nesting_depth,
    parse_projects,
    projects_json,
)

EXAMPLE = [
    {
        "name": "street-scenes",
        "labels": [{"name": "car", "color": "#FF0000", "type": "rectangle"}, "pedestrian"],
        "conditions": {"lighting": ["day", "night"]},
        "protected": {"apparent_gender": ["female", "male", "unclear"]},
    }
]


def project(**changes):
    return [{**EXAMPLE[0], **changes}]


def problems_of(raw):
    projects, problems = parse_projects(raw)
    assert problems, "expected a problem"
    return projects, problems


def test_the_example_parses_into_typed_projects():
    projects, problems = parse_projects(EXAMPLE)
    assert problems == []
    assert projects == [
        Project(
            "street-scenes",
            (Label("car", "#ff0000", "rectangle"), Label("pedestrian", None, "any")),
            (Attribute("lighting", ("day", "night"), "conditions"),),
            (Attribute("apparent_gender", ("female", "male", "unclear"), "protected"),),
        )
    ]
    with pytest.raises(AttributeError):
        projects[0].name = "other"  # frozen


def test_the_json_text_pulumi_config_gives_is_accepted_too():
    assert parse_projects(json.dumps(EXAMPLE)) == parse_projects(EXAMPLE)
    assert parse_projects(None) == ([], [])
    assert parse_projects("") == ([], [])
    assert parse_projects([]) == ([], [])


def test_every_attribute_goes_on_every_label_as_an_unlabeled_radio():
    (parsed,), _ = parse_projects(EXAMPLE)
    lighting = {"name": "lighting", "mutable": False, "input_type": "radio", "default_value": "unlabeled",
                "values": ["unlabeled", "day", "night"]}
    gender = {"name": "apparent_gender", "mutable": False, "input_type": "radio", "default_value": "unlabeled",
              "values": ["unlabeled", "female", "male", "unclear"]}
    assert cvat_labels(parsed) == [
        {"name": "car", "color": "#ff0000", "type": "rectangle", "attributes": [lighting, gender]},
        {"name": "pedestrian", "type": "any", "attributes": [lighting, gender]},
    ]
    # Each label has its own copies (a caller changing one does not change the other).
    labels = cvat_labels(parsed)
    assert labels[0]["attributes"][0] is not labels[1]["attributes"][0]


def test_a_project_without_attributes_has_plain_labels():
    projects, problems = parse_projects([{"name": "p", "labels": ["a"]}])
    assert problems == [] and cvat_labels(projects[0]) == [{"name": "a", "type": "any", "attributes": []}]


def test_projects_json_is_canonical():
    projects, _ = parse_projects(EXAMPLE)
    text = projects_json(projects)
    assert json.loads(text) == [{"name": "street-scenes", "labels": cvat_labels(projects[0])}]
    reordered = [{"protected": EXAMPLE[0]["protected"], "conditions": EXAMPLE[0]["conditions"],
                  "labels": [{"type": "rectangle", "color": "#ff0000", "name": "car"}, {"name": "pedestrian"}],
                  "name": "street-scenes"}]
    assert projects_json(parse_projects(reordered)[0]) == text  # key order and color case do not matter
    assert text.isascii() and " " not in text.replace("street-scenes", "")
    added = project(conditions={"lighting": ["day", "night", "dusk"]})
    assert projects_json(parse_projects(added)[0]) != text
    assert projects_json([]) == "[]"


def test_non_ascii_names_survive_the_json():
    projects, problems = parse_projects([{"name": "Straßen", "labels": ["vélo"], "conditions": {"météo": ["pluie"]}}])
    assert problems == []
    assert json.loads(projects_json(projects))[0]["labels"][0]["attributes"][0]["name"] == "météo"


BAD = [
    # (the raw config, words every problem about it must contain)
    ({"name": "x"}, ["list of projects"]),
    ("not json", ["list of projects"]),
    (["street"], ["project #1", "object"]),
    ([{"labels": ["a"]}], ["project #1", "name", "must be a string"]),
    ([{"name": 7, "labels": ["a"]}], ["project #1", "must be a string", "7"]),
    ([{"name": "", "labels": ["a"]}], ["project #1", "empty"]),
    ([{"name": "p" * 257, "labels": ["a"]}], ["project #1", "257 characters", "256"]),
    ([{"name": " p", "labels": ["a"]}], ["project #1", "whitespace"]),
    ([{"name": "p\n2", "labels": ["a"]}], ["project #1", "control character"]),
    ([{"name": "p", "labels": ["a"]}, {"name": "p", "labels": ["b"]}], ["project 'p'", "listed twice"]),
    (project(colour="#ffffff"), ["project 'street-scenes'", "unknown key", "'colour'"]),
    (project(labels=[]), ["project 'street-scenes'", "labels is empty"]),
    (project(labels=None), ["project 'street-scenes'", "labels must be a list"]),
    (project(labels="car"), ["project 'street-scenes'", "labels must be a list"]),
    (project(labels=["car", "car"]), ["project 'street-scenes'", "label 'car'", "listed twice"]),
    (project(labels=["car", {"name": "car", "type": "rectangle"}]), ["project 'street-scenes'", "label 'car'", "listed twice"]),
    (project(labels=[7]), ["project 'street-scenes'", "a label must be a name or an object", "got 7"]),
    (project(labels=[["car"]]), ["project 'street-scenes'", "a label must be a name or an object"]),
    (project(labels=[{"color": "#ff0000"}]), ["project 'street-scenes'", "label name", "must be a string"]),
    (project(labels=["c" * 65]), ["project 'street-scenes'", "label name", "65 characters", "64"]),
    (project(labels=["car "]), ["project 'street-scenes'", "label name", "whitespace"]),
    (project(labels=[""]), ["project 'street-scenes'", "label name", "empty"]),
    (project(labels=["car\tx"]), ["project 'street-scenes'", "control character"]),
    (project(labels=[{"name": "car", "color": "red"}]), ["project 'street-scenes'", "label 'car'", "color", "red", "#rrggbb"]),
    (project(labels=[{"name": "car", "color": "#ff00"}]), ["label 'car'", "#ff00"]),
    (project(labels=[{"name": "car", "color": "#ff0000ff"}]), ["label 'car'", "#ff0000ff"]),
    (project(labels=[{"name": "car", "color": 16711680}]), ["label 'car'", "16711680"]),
    (project(labels=[{"name": "car", "type": "box"}]), ["project 'street-scenes'", "label 'car'", "type", "box", "not a CVAT label type"]),
    (project(labels=[{"name": "car", "type": "bbox"}]), ["label 'car'", "bbox"]),
    (project(labels=[{"name": "car", "type": "skeleton"}]), ["project 'street-scenes'", "label 'car'", "skeleton", "sublabels"]),
    (project(labels=[{"name": "car", "shape": "rectangle"}]), ["label 'car'", "unknown key", "'shape'"]),
    (project(conditions=["lighting"]), ["project 'street-scenes'", "conditions must be a mapping"]),
    (project(protected="apparent_gender"), ["project 'street-scenes'", "protected must be a mapping"]),
    (project(conditions={"lighting": []}), ["project 'street-scenes'", "conditions attribute 'lighting'", "empty"]),
    (project(protected={"apparent_gender": []}), ["project 'street-scenes'", "protected attribute 'apparent_gender'", "empty"]),
    (project(conditions={"lighting": "day"}), ["conditions attribute 'lighting'", "must be a list"]),
    (project(conditions={"lighting": ["day", "day"]}), ["conditions attribute 'lighting'", "value 'day'", "twice"]),
    (project(conditions={"lighting": ["day", "unlabeled"]}), ["conditions attribute 'lighting'", "'unlabeled'"]),
    (project(protected={"apparent_gender": ["unlabeled"]}), ["protected attribute 'apparent_gender'", "'unlabeled'"]),
    (project(conditions={"lighting": ["day\nnight"]}), ["conditions attribute 'lighting'", "control character"]),
    (project(conditions={"lighting": ["day", ""]}), ["conditions attribute 'lighting'", "empty"]),
    (project(conditions={"lighting": [" day"]}), ["conditions attribute 'lighting'", "whitespace"]),
    (project(conditions={"lighting": ["d" * 201]}), ["conditions attribute 'lighting'", "201 characters", "200"]),
    (project(conditions={"lighting": [1, 2]}), ["conditions attribute 'lighting'", "must be a string", 'quote it: "1"']),
    (project(conditions={"lighting": [True]}), ["conditions attribute 'lighting'", 'quote it: "true"']),
    (project(conditions={"lighting": [None]}), ["conditions attribute 'lighting'", "must be a string", "null"]),
    (project(conditions={"lighting": [f"value-{n:03}-" + "x" * 180 for n in range(22)]}),
     ["conditions attribute 'lighting'", "4096"]),
    (project(conditions={"l" * 65: ["day"]}), ["project 'street-scenes'", "conditions", "attribute name", "65 characters", "64"]),
    (project(conditions={"": ["day"]}), ["project 'street-scenes'", "attribute name", "empty"]),
    (project(conditions={"light ing ": ["day"]}), ["attribute name", "whitespace"]),
    (project(conditions={"car": ["day", "night"]}), ["project 'street-scenes'", "attribute 'car'", "name of a label"]),
    (project(protected={"pedestrian": ["yes"]}), ["project 'street-scenes'", "attribute 'pedestrian'", "name of a label"]),
    (project(conditions={"occluded": ["yes", "no"]}), ["project 'street-scenes'", "attribute 'occluded'", "shape property"]),
    # CVAT 2.73's import takes these out of an annotation's attributes (bindings.py CVAT_INTERNAL_ATTRIBUTES).
    (project(conditions={"source": ["camera", "phone"]}),
     ["project 'street-scenes'", "conditions attribute 'source'", "labels 'car', 'pedestrian'", "internal", "importing annotations"]),
    (project(protected={"score": ["low", "high"]}),
     ["project 'street-scenes'", "protected attribute 'score'", "labels 'car', 'pedestrian'", "internal", "importing annotations"]),
    (project(labels=["car"], conditions={"source": ["manual", "auto"]}), ["attribute 'source'", "label 'car'", "internal"]),
    (project(protected={"lighting": ["day"]}), ["project 'street-scenes'", "attribute 'lighting'", "both conditions and protected"]),
]


@pytest.mark.parametrize("raw, words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_every_bad_schema_is_named(raw, words):
    projects, problems = problems_of(raw)
    assert any(all(word in problem for word in words) for problem in problems), problems
    # A bad project is never handed on.
    assert all(p.name != "street-scenes" for p in projects) or len(raw) > 1


def test_all_problems_are_reported_at_once():
    raw = [
        {"name": "a", "labels": ["x", "x"], "conditions": {"w": []}},
        {"name": "b", "labels": [{"name": "y", "color": "blue", "type": "skeleton"}], "protected": {"y": ["1"]}},
        {"name": "c", "labels": ["ok"]},
    ]
    projects, problems = parse_projects(raw)
    assert [p.name for p in projects] == ["c"]
    assert sum("project 'a'" in p for p in problems) == 2
    assert sum("project 'b'" in p for p in problems) == 3  # color, type, attribute named like a label
    assert all(isinstance(problem, str) and "\n" not in problem for problem in problems)


def test_a_schema_too_big_for_the_job_is_refused():
    labels = [f"label-{n:04}-" + "x" * 50 for n in range(40)]
    values = [f"v{n:03}-" + "y" * 150 for n in range(25)]
    raw = [{"name": "big", "labels": labels, "conditions": {"a": values}, "protected": {"b": values}}]
    projects, problems = parse_projects(raw)
    assert len(projects_json(projects).encode()) > MAX_JSON_BYTES
    assert problems and "bytes" in problems[0] and str(MAX_JSON_BYTES) in problems[0]


def test_limits_are_inclusive():
    raw = [{"name": "p" * 256, "labels": ["l" * 64], "conditions": {"a" * 64: ["v" * 200]}}]
    assert parse_projects(raw)[1] == []
    every_type = [{"name": t, "type": t} for t in
                  ("any", "rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "tag", "interval")]
    assert parse_projects([{"name": "p", "labels": every_type}])[1] == []


def test_cvats_internal_import_attributes_are_refused_by_the_config_naming_projects():
    # Through load_config: one problem under the key `projects`, naming the project, the labels and why.
    from support.stacks import problems_of as config_problems, with_ as config_with

    raw = [{**EXAMPLE[0], "conditions": {"lighting": ["day", "night"], "source": ["camera", "phone"]},
            "protected": {"score": ["low", "high"]}}]
    problems, message = config_problems(config_with(projects=raw))
    reasons = [reason for key, reason in problems if key == "projects"]
    assert [key for key, _ in problems] == ["projects", "projects"], message
    for name in ("source", "score"):
        (reason,) = [r for r in reasons if f"attribute {name!r}" in r]
        assert "project 'street-scenes'" in reason and "'car', 'pedestrian'" in reason
        assert "CVAT 2.73 treats 'source' and 'score' as internal" in reason
    assert "  - projects: project 'street-scenes'" in message


def test_names_near_the_internal_ones_are_fine():
    raw = [{**EXAMPLE[0], "conditions": {"sources": ["a"], "Score": ["b"], "score_band": ["c"], "data_source": ["d"]}}]
    assert parse_projects(raw)[1] == []


# ----- issue 15: no traceback, whatever the value holds (each failed before its fix) ---------------


@pytest.mark.parametrize("label_type", [["rectangle"], {"rectangle": True}, [], {}, [["skeleton"]]])
def test_a_label_type_given_as_a_list_or_a_map_is_a_problem_not_a_traceback(label_type):
    _, problems = problems_of(project(labels=[{"name": "car", "type": label_type}]))
    assert problems == [f"project 'street-scenes': label 'car': type must be one of {', '.join(LABEL_TYPES)}, got {json.dumps(label_type)}"]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 5_000, 200_000])
def test_deeply_nested_json_is_a_problem_not_a_recursion_error(depth):
    text = "[" * depth + "]" * depth
    assert problems_of(text)[1][0].startswith("is nested")
    wrapped = json.dumps(EXAMPLE)[:-1] + "," + text + "]"  # a good project beside a deep one
    assert problems_of(wrapped)[1][0].startswith("is nested")


def test_nesting_in_a_python_value_is_refused_before_anything_walks_it():
    deep: list = []
    for _ in range(5_000):
        deep = [deep]
    assert problems_of(deep)[1] == [f"is nested more than {MAX_DEPTH} levels deep: give a list of projects "
                                    "(name, labels, conditions, protected)"]
    assert nesting_depth(deep, 10) == 11  # counting stops past the limit


@pytest.mark.parametrize("digits", [4301, 20_000])
def test_an_integer_over_4300_digits_is_a_problem_not_a_value_error(digits):
    huge = "1" + "0" * (digits - 1)
    for text in (f"[{huge}]", json.dumps(EXAMPLE).replace('"car"', huge), f'[{{"name": {huge}}}]'):
        _, problems = problems_of(text)
        assert problems == ["holds a number too long to read (over 4300 digits): give a list of projects "
                            "(name, labels, conditions, protected)"]


def test_a_big_but_readable_integer_is_shown_cut_short():
    _, problems = problems_of(project(name=10**4000))
    assert len(problems[0]) < 300 and "must be a string" in problems[0]


def test_load_json():
    assert load_json('["a"]') == (["a"], None)
    assert load_json("nope") == (None, "is not valid JSON")
    assert load_json("[[[1]]]", max_depth=2) == (None, "is nested more than 2 levels deep")
    assert load_json("[" * 100_000) [1] in ("is nested too deeply to read", "is not valid JSON")
