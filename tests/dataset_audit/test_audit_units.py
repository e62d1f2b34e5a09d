"""The unit of analysis (issue 16): a track is one item, items know the cluster they are resampled in,
names stay unique across job and task exports, and multi-label tags are items of their image."""

import pytest
from support.audit_exports import Image, coco_json, coco_video_json, images_xml, track, video_xml, zipped

from audit.cli import main
from audit.dataset import Attribute, Dataset, Item, build_dataset
from audit.errors import AuditError
from audit.exports import load_export

LIGHTING = {"lighting": ["day", "night"]}
DAY, NIGHT, UNLABELED = {"lighting": "day"}, {"lighting": "night"}, {"lighting": "unlabeled"}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def dataset_of(paths, per_object=False, multi_label=False):
    return build_dataset([load_export(path) for path in paths], per_object, None, multi_label=multi_label)


def values_of(dataset):
    return {item.id: (item.label, item.values["lighting"]) for item in dataset.items}


# --- tracks are items -----------------------------------------------------------------------------

# Eight tracks of 660 visible frames in all. Each is mostly one value, with some frames of the other
# value and some not audited: (label, frames of its majority value, frames of the other, unlabeled frames,
# majority value). No track's label says anything about its lighting.
EIGHT = [
    ("car", 60, 15, 5, "day"),
    ("car", 50, 30, 5, "night"),
    ("pedestrian", 70, 0, 5, "day"),
    ("pedestrian", 45, 40, 5, "night"),
    ("car", 40, 25, 5, "night"),
    ("pedestrian", 55, 25, 5, "day"),
    ("car", 44, 30, 6, "day"),
    ("pedestrian", 50, 40, 5, "night"),
]


def eight_tracks():
    tracks, start = [], 0
    for number, (label, majority, minority, unlabeled, value) in enumerate(EIGHT):
        other = "night" if value == "day" else "day"
        # The minority value comes first, so that "seen first" cannot be what decides.
        values = [{"lighting": other}] * minority + [UNLABELED] * unlabeled + [{"lighting": value}] * majority
        tracks.append(track(number, label, values, start=start))
        start += 3
    return tracks


def test_eight_tracks_of_660_frames_are_eight_items_with_their_majority_values(tmp_path):
    assert sum(majority + minority + unlabeled for _, majority, minority, unlabeled, _ in EIGHT) == 660
    path = write(tmp_path, "video.zip", zipped({"annotations.xml": video_xml(eight_tracks(), attributes=LIGHTING)}))
    dataset = dataset_of([path], per_object=True)
    assert values_of(dataset) == {
        f"task1/clip.mp4#track{number}": (label, value) for number, (label, *_, value) in enumerate(EIGHT)
    }
    assert dataset.units == "tracks"
    assert dataset.clusters() == 8
    assert all(item.cluster == item.id for item in dataset.items)
    # The tracks whose value changes are told about (7 of the 8 change; track 2 never does).
    assert any("lighting in 7 of 8" in note and "most of their visible frames" in note for note in dataset.notes)


def test_the_majority_rule_ties_unlabeled_frames_and_outside_frames(tmp_path):
    tracks = [
        # A tie (2 day, 2 night): the value of the earliest frame (1) wins, although the file lists night first.
        {"id": 0, "label": "car", "boxes": [(5, False, NIGHT), (6, False, DAY), (7, False, NIGHT), (1, False, DAY)]},
        # Audited on 2 of 12 frames: `unlabeled` is no vote, so the track is night.
        track(1, "car", [UNLABELED] * 10 + [NIGHT] * 2),
        # Never audited: unlabeled.
        track(2, "car", [UNLABELED] * 4),
        # Outside frames do not count: 1 visible day frame, 3 night frames outside.
        {"id": 3, "label": "car", "boxes": [(0, False, DAY), (1, True, NIGHT), (2, True, NIGHT), (3, True, NIGHT)]},
        # Never visible: no item at all.
        {"id": 4, "label": "car", "boxes": [(0, True, DAY)]},
    ]
    path = write(tmp_path, "annotations.xml", video_xml(tracks, attributes=LIGHTING))
    assert values_of(dataset_of([path], per_object=True)) == {
        "task1/clip.mp4#track0": ("car", "day"),
        "task1/clip.mp4#track1": ("car", "night"),
        "task1/clip.mp4#track2": ("car", "unlabeled"),
        "task1/clip.mp4#track3": ("car", "day"),
    }


def test_coco_annotations_sharing_a_track_id_are_one_item_and_the_others_objects_of_their_image(tmp_path):
    tracks = [
        track(7, "car", [NIGHT] * 2 + [DAY] * 5),
        track(8, "pedestrian", [UNLABELED] * 3 + [NIGHT] * 3, start=2),
    ]
    shapes = {0: [("bicycle", DAY), ("bicycle", NIGHT)], 4: [("car", UNLABELED)]}
    path = write(tmp_path, "coco.zip", zipped({"annotations/instances_Train.json": coco_video_json(tracks, 9, shapes)}))
    dataset = dataset_of([path], per_object=True)
    assert values_of(dataset) == {
        "Train#track7": ("car", "day"),
        "Train#track8": ("pedestrian", "night"),
        "frame_000000.jpg#0": ("bicycle", "day"),
        "frame_000000.jpg#1": ("bicycle", "night"),
        "frame_000004.jpg#0": ("car", "unlabeled"),
    }
    clusters = {item.id: item.cluster for item in dataset.items}
    assert clusters["frame_000000.jpg#0"] == clusters["frame_000000.jpg#1"] == "frame_000000.jpg"
    assert clusters["Train#track7"] == "Train#track7"
    assert dataset.units == "tracks and objects in 2 images"
    assert dataset.clusters() == 4
    # CVAT's own track_id and keyframe are no attributes to audit; lighting is (it is seen `unlabeled`).
    assert [attribute.name for attribute in dataset.attributes] == ["lighting"]


def test_a_coco_track_id_with_two_categories_is_refused(tmp_path):
    # Two tasks of a project exported to one COCO file: each numbers its tracks from 0.
    tracks = [track(0, "car", [DAY] * 2), track(0, "pedestrian", [NIGHT] * 2, start=5)]
    path = write(tmp_path, "instances_default.json", coco_video_json(tracks, 8))
    with pytest.raises(AuditError, match=r"track 0 has annotations of two categories \('car' and 'pedestrian'\)"):
        load_export(path)


# --- clusters in each mode -------------------------------------------------------------------------------


def test_each_item_names_the_cluster_it_is_resampled_with(tmp_path):
    images = [
        Image("a.jpg", tags=[("car", DAY)], shapes=[("car", DAY), ("pedestrian", NIGHT)]),
        Image("b.jpg", tags=[("pedestrian", NIGHT)], shapes=[("bicycle", DAY)]),
    ]
    path = write(tmp_path, "annotations.xml", images_xml(images, attributes=LIGHTING))
    tags = dataset_of([path])
    assert {item.id: item.cluster for item in tags.items} == {"a.jpg": "a.jpg", "b.jpg": "b.jpg"}
    assert (tags.units, tags.clusters()) == ("images", 2)
    objects = dataset_of([path], per_object=True)
    assert {item.id: item.cluster for item in objects.items} == {"a.jpg#0": "a.jpg", "a.jpg#1": "a.jpg", "b.jpg#0": "b.jpg"}
    assert (objects.units, objects.clusters()) == ("objects in 2 images", 2)


def test_frames_of_a_video_are_clustered_by_video_in_tag_and_per_object_mode(tmp_path):
    frames = [Image(f"frame_{n:06d}", tags=[("car", DAY)], shapes=[("car", DAY)], frame_id=n) for n in range(4)]
    path = write(tmp_path, "annotations.xml", images_xml(frames, attributes=LIGHTING, mode="interpolation", source="a.mp4"))
    tags = dataset_of([path])
    assert {item.cluster for item in tags.items} == {"task1/a.mp4"}
    assert (len(tags.items), tags.units, tags.clusters()) == (4, "frames in 1 video", 1)
    objects = dataset_of([path], per_object=True)
    assert (len(objects.items), objects.units, objects.clusters()) == (4, "objects in 1 video", 1)


def test_a_dataset_built_by_hand_clusters_every_item_alone():
    attribute = Attribute("lighting", "condition", ("day", "night"))
    items = [Item("a", "car", DAY), Item("b", "car", NIGHT, cluster="video"), Item("c", "car", NIGHT, cluster="video")]
    dataset = Dataset(items, [attribute], "tag")
    assert [item.cluster for item in items] == ["a", "video", "video"]
    assert dataset.clusters() == 2
    assert dataset.units == "items in 2 clusters"
    assert Dataset(items[:1], [attribute], "tag").units == "items"


# --- names across job, task and project exports --------------------------------------------------------


def job_video(job_id, tracks):
    return video_xml(tracks, attributes=LIGHTING, job=job_id)


def test_two_job_exports_of_one_project_load_together_without_a_name_collision(tmp_path):
    # Both jobs start at frame 0 and number their tracks from 0: they used to give `video:0#0` twice.
    first = write(tmp_path, "job_5.zip", zipped({"annotations.xml": job_video(5, [track(0, "car", [DAY] * 3)])}))
    second = write(tmp_path, "job_6.zip", zipped({"annotations.xml": job_video(6, [track(0, "car", [NIGHT] * 3)])}))
    dataset = dataset_of([first, second], per_object=True)
    assert values_of(dataset) == {"job5/video#track0": ("car", "day"), "job6/video#track0": ("car", "night")}
    # The same job passed twice is still refused.
    again = write(tmp_path, "job_5_again.zip", (tmp_path / "job_5.zip").read_bytes())
    with pytest.raises(AuditError, match=r"'job5/video#track0' is in both .*job_5\.zip and .*job_5_again\.zip: pass each"):
        dataset_of([first, again], per_object=True)


def numbered_images(first_value: dict, count: int = 3, start: int = 0) -> list[Image]:
    """Images named as CVAT names the frames of every task: 0000.jpg, 0001.jpg, ..."""
    return [Image(f"{n:04d}.jpg", tags=[("car", first_value if n % 2 == 0 else UNLABELED)]) for n in range(start, start + count)]


def test_images_of_two_task_exports_with_the_same_names_are_named_after_their_task(tmp_path):
    # Every task starts at 0000.jpg: the two exports used to be refused as "the same export passed twice".
    first = write(tmp_path, "task_7.xml", images_xml(numbered_images(DAY), attributes=LIGHTING, task_id=7))
    second = write(tmp_path, "task_8.xml", images_xml(numbered_images(NIGHT, 4), attributes=LIGHTING, task_id=8))
    dataset = dataset_of([first, second])
    assert values_of(dataset) == {
        **{f"task7/{n:04d}.jpg": ("car", "day" if n % 2 == 0 else "unlabeled") for n in range(3)},
        **{f"task8/{n:04d}.jpg": ("car", "night" if n % 2 == 0 else "unlabeled") for n in range(4)},
    }
    assert any("task7 and task8 share names" in note and "'task7/0000.jpg'" in note for note in dataset.notes)
    # The same task passed twice is still refused, with the message of a duplicate.
    again = write(tmp_path, "task_7_again.xml", (tmp_path / "task_7.xml").read_bytes())
    with pytest.raises(AuditError, match=r"'0000\.jpg' is in both .*task_7\.xml and .*task_7_again\.xml: pass each export once"):
        dataset_of([first, again])


def test_images_of_two_job_exports_with_the_same_names_are_named_after_their_job(tmp_path, capsys):
    first = write(tmp_path, "job_5.xml", images_xml(numbered_images(DAY), attributes=LIGHTING, job=5))
    second = write(tmp_path, "job_6.xml", images_xml(numbered_images(NIGHT), attributes=LIGHTING, job=6))
    out = tmp_path / "list.csv"
    assert main(["sample", first, second, "--size", "6", "--include-audited", "--out", str(out)]) == 0
    listed = out.read_text()
    assert all(f"job{job}/{n:04d}.jpg" in listed for job in (5, 6) for n in range(3))
    assert "note: images of job5 and job6 share names" in capsys.readouterr().err


def test_images_of_tasks_that_share_no_name_keep_their_plain_names(tmp_path):
    # Prediction files name images as they are: only a name held by two tasks makes their images qualified.
    first = write(tmp_path, "task_7.xml", images_xml(numbered_images(DAY), attributes=LIGHTING, task_id=7))
    second = write(tmp_path, "task_8.xml", images_xml(numbered_images(NIGHT, start=3), attributes=LIGHTING, task_id=8))
    third = write(tmp_path, "task_9.xml", images_xml(numbered_images(NIGHT, start=10), attributes=LIGHTING, task_id=9))
    dataset = dataset_of([first, second, third])
    assert [item.id for item in dataset.items] == [f"{n:04d}.jpg" for n in [0, 1, 2, 3, 4, 5, 10, 11, 12]]
    assert not any("share names" in note for note in dataset.notes)
    # With a fourth task repeating 0010.jpg, only the tasks that share a name are qualified.
    fourth = write(tmp_path, "task_4.xml", images_xml(numbered_images(DAY, 1, start=10), attributes=LIGHTING, task_id=4))
    ids = [item.id for item in dataset_of([first, second, third, fourth]).items]
    assert ids == [f"{n:04d}.jpg" for n in range(6)] + ["task4/0010.jpg"] + [f"task9/{n:04d}.jpg" for n in (10, 11, 12)]


def test_job_exports_of_video_frames_for_images_are_named_by_job_and_frame(tmp_path):
    def job_images(job_id):
        frames = [Image(f"frame_{n:06d}", tags=[("car", DAY)], frame_id=n) for n in range(3)]
        return images_xml(frames, attributes=LIGHTING, mode="interpolation", job=job_id)

    first = write(tmp_path, "job_5.xml", job_images(5))
    second = write(tmp_path, "job_6.xml", job_images(6))
    dataset = dataset_of([first, second])
    assert [item.id for item in dataset.items] == [f"job{job}/video:{n}" for job in (5, 6) for n in range(3)]
    assert dataset.units == "frames in 2 videos"


def test_a_project_export_names_tracks_of_two_tasks_with_the_same_video_apart(tmp_path):
    tracks = [dict(track(0, "car", [DAY] * 2), task_id=3), dict(track(1, "car", [NIGHT] * 2), task_id=4)]
    tasks = [(3, "monday", "interpolation", "cam.mp4"), (4, "tuesday", "interpolation", "cam.mp4")]
    path = write(tmp_path, "project.xml", video_xml(tracks, attributes=LIGHTING, tasks=tasks))
    assert values_of(dataset_of([path], per_object=True)) == {
        "task3/cam.mp4#track0": ("car", "day"),
        "task4/cam.mp4#track1": ("car", "night"),
    }


def test_a_task_export_and_a_project_export_name_a_frame_alike(tmp_path):
    def frames(task_id):
        return [Image(f"frame_{n:06d}", tags=[("car", DAY)], frame_id=n, task_id=task_id) for n in range(2)]

    task = images_xml(frames(None), attributes=LIGHTING, mode="interpolation", source="cam.mp4", task_id=12)
    project = images_xml(frames(12), attributes=LIGHTING, tasks=[(12, "street", "interpolation", "cam.mp4")])
    for name, content in (("task.xml", task), ("project.xml", project)):
        dataset = dataset_of([write(tmp_path, name, content)])
        assert [item.id for item in dataset.items] == ["task12/cam.mp4:0", "task12/cam.mp4:1"], name


# --- multi-label tags ------------------------------------------------------------------------------------


def multi_tagged(tmp_path):
    images = [
        Image("a.jpg", tags=[("car", UNLABELED), ("car", DAY), ("pedestrian", NIGHT)]),
        Image("b.jpg", tags=[("car", NIGHT)]),
        Image("c.jpg"),
    ]
    return write(tmp_path, "annotations.xml", images_xml(images, attributes=LIGHTING))


def test_multi_label_makes_each_label_of_an_image_one_item_clustered_by_image(tmp_path):
    dataset = dataset_of([multi_tagged(tmp_path)], multi_label=True)
    # Two `car` tags on a.jpg are one car item; of their values, the real one wins over `unlabeled`.
    assert values_of(dataset) == {
        "a.jpg#car": ("car", "day"),
        "a.jpg#pedestrian": ("pedestrian", "night"),
        "b.jpg#car": ("car", "night"),
    }
    assert {item.id: item.cluster for item in dataset.items} == {
        "a.jpg#car": "a.jpg",
        "a.jpg#pedestrian": "a.jpg",
        "b.jpg#car": "b.jpg",
    }
    assert (dataset.mode, dataset.units, dataset.clusters()) == ("multi-label", "tags in 2 images", 2)
    assert dataset.excluded == {"no_tag": 1, "several_tags": 0, "empty_label": 0}
    assert any("1 frames carry a label in several tags" in note for note in dataset.notes)


def test_without_multi_label_an_image_with_several_tags_is_left_out(tmp_path):
    dataset = dataset_of([multi_tagged(tmp_path)])
    assert values_of(dataset) == {"b.jpg": ("car", "night")}
    assert dataset.excluded["several_tags"] == 1


def test_multi_label_is_refused_with_per_object_in_one_error_line(tmp_path, capsys):
    path = multi_tagged(tmp_path)
    assert main(["report", path, "--multi-label", "--per-object", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --multi-label and --per-object do not go together") and err.count("\n") == 1


def test_multi_label_runs_from_the_command_line(tmp_path):
    # Items nobody audited yet, to be sampled for the additional labels.
    images = [Image("a.jpg", tags=[("car", UNLABELED), ("pedestrian", UNLABELED)]), Image("b.jpg", tags=[("car", UNLABELED)])]
    export = write(tmp_path, "annotations.xml", images_xml(images, attributes=LIGHTING))
    out = tmp_path / "list.csv"
    assert main(["sample", export, "--multi-label", "--size", "3", "--out", str(out)]) == 0
    listed = out.read_text()
    assert "a.jpg#car" in listed and "a.jpg#pedestrian" in listed and "b.jpg#car" in listed


def test_coco_tracks_of_two_exports_collide_with_an_error_that_says_why(tmp_path):
    content = coco_video_json([track(0, "car", [DAY] * 2)], 3)
    first = write(tmp_path, "a.json", content)
    second = write(tmp_path, "b.json", coco_json([Image("x.jpg", shapes=[("car", DAY)])]))
    assert len(dataset_of([first, second], per_object=True).items) == 2
    again = write(tmp_path, "c.json", content)
    with pytest.raises(AuditError, match="COCO exports do not say which task they hold"):
        dataset_of([first, again], per_object=True)
