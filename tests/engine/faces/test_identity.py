"""People from tracks: identity descriptors group one person's shots and keep two people apart."""

import numpy as np
import pytest

from engine.faces import identity
from engine.faces.extract import ExtractParams, extract_faces
from engine.media.encode import write_video
from engine.media.synthetic import camera_frames, portrait
from engine.workspace import Workspace


def test_grouping_joins_close_tracks_and_does_not_chain():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 0.1, 128), rng.normal(0, 0.1, 128)
    b = a + (b - a) / np.linalg.norm(b - a) * 0.9  # two people 0.9 apart
    step = (b - a) / 4
    tracks = {1: a, 2: a + 0.01, 3: b, 4: b - 0.01}
    assert identity.group(tracks) == {1: 1, 2: 1, 3: 3, 4: 3}
    # a chain of tracks 0.225 apart from one person to the other must not merge them all
    chain = {i + 1: a + step * i for i in range(5)}
    people = identity.group(chain)
    assert len(set(people.values())) >= 2
    assert identity.group({7: a}) == {7: 7}


@pytest.mark.skipif(not identity.available(), reason="the identity extra (dlib-bin) is not installed")
def test_one_person_across_cuts_is_one_person_and_the_default_choice(tmp_path):
    hopper = list(camera_frames(portrait("hopper"), 12, (320, 240), centre=(0.5, 0.36)))
    other = list(camera_frames(portrait("astronaut"), 10, (320, 240), seed=1, centre=(0.45, 0.3)))
    clip = write_video(tmp_path / "cuts.mp4", hopper + other + hopper[::-1], 10)  # two cuts
    ws = Workspace(tmp_path / "ws")
    result = extract_faces(ws, ExtractParams(video=str(clip), faceset="f", size=128), lambda *a: None, lambda: False)
    assert result["tracks"] == 3
    tracks = {t["track"]: t for t in ws.facesets.tracks("f")}
    first, second, third = sorted(tracks)
    assert tracks[first]["person"] == tracks[third]["person"] != tracks[second]["person"]
    # the person seen most (Hopper, 24 faces in two shots) is who the faceset stands for
    assert {f.track for f in ws.facesets.faces("f")} == {first, third}
    assert len(ws.facesets.faces("f")) == 24


@pytest.mark.skipif(not identity.available(), reason="the identity extra (dlib-bin) is not installed")
def test_identities_are_computed_once_there_is_someone_to_tell_apart(tmp_path, portrait_clips):
    ws = Workspace(tmp_path / "ws")
    run = lambda clip: extract_faces(ws, ExtractParams(video=str(clip), faceset="f", size=128),  # noqa: E731
                                     lambda *a: None, lambda: False)
    run(portrait_clips["hopper"])
    assert [t["person"] for t in ws.facesets.tracks("f")] == [None]  # one track: nothing to group, no cost
    run(portrait_clips["astronaut"])
    people = [t["person"] for t in ws.facesets.tracks("f")]
    assert None not in people and len(set(people)) == 2
