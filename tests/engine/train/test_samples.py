"""Tests for engine.train.samples: faceset checks and the augmented batches."""

import cv2
import numpy as np
import pytest
import torch

from engine.geometry.align import face_type, template_points
from engine.geometry.hull import feather, hull_mask
from engine.train.bench import synthetic_faces
from engine.train.samples import Augmentation, Batch, BatchSampler, FaceSamples, prepare


def test_faceset_checks_its_arrays():
    faces = synthetic_faces(2)
    assert len(faces) == 2 and faces.size == 64 and faces.landmarks.dtype == np.float32
    with pytest.raises(ValueError):
        FaceSamples(faces.images.astype(np.float32), faces.landmarks)
    with pytest.raises(ValueError):
        FaceSamples(faces.images, faces.landmarks[:1])
    with pytest.raises(ValueError):
        FaceSamples(faces.images[:, :, :32], faces.landmarks)


def test_batches_have_the_model_resolution_and_range():
    sampler = BatchSampler(synthetic_faces(5), 32, seed=0)
    batch = sampler.sample(4)
    assert isinstance(batch, Batch)
    warped, target, mask, priority = batch
    assert warped.shape == target.shape == (4, 3, 32, 32) and mask.shape == priority.shape == (4, 1, 32, 32)
    for t in batch:
        assert t.dtype == torch.float32 and 0 <= float(t.min()) and float(t.max()) <= 1
    assert warped.is_contiguous(memory_format=torch.channels_last)


def test_random_warp_changes_the_input_only():
    sampler = BatchSampler(synthetic_faces(3), 32, seed=1)
    warped, target, _, _ = sampler.sample(6)
    assert warped.shape == target.shape
    # the cartoon faces are mostly flat colour: look at where the edges move, sample by sample
    assert ((warped - target).abs().amax(dim=(1, 2, 3)) > 0.2).all()
    still = BatchSampler(synthetic_faces(3), 32, Augmentation(random_warp=False), seed=1)
    warped, target, _, _ = still.sample(6)
    assert torch.equal(warped, target)


def test_without_jitter_the_target_is_the_resized_face_and_the_mask_covers_it():
    faces = synthetic_faces(2)
    none = Augmentation(rotation_deg=0, scale=0, shift=0, flip=False, random_warp=False)
    sampler = BatchSampler(faces, 32, none, seed=0)
    _, target, mask, _ = sampler.sample(2)
    expected = {cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA).tobytes() for im in faces.images}
    got = {(t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8).tobytes() for t in target}
    assert got == expected
    nose = faces.landmarks[0, 30] * 32 / 64
    assert mask[0, 0, int(nose[1]), int(nose[0])] > 0.9  # inside the face
    assert mask[0, 0, 0, 0] == 0 and mask[0, 0, 31, 31] == 0  # corners are background


def test_every_face_is_drawn_once_per_pass():
    sampler = BatchSampler(synthetic_faces(5), 16, seed=0)
    seen = np.concatenate([sampler._next_indices(2) for _ in range(5)])
    assert sorted(seen[:5]) == [0, 1, 2, 3, 4] and sorted(seen[5:]) == [0, 1, 2, 3, 4]


def test_empty_faceset_cannot_be_sampled():
    faces = synthetic_faces(1)
    empty = FaceSamples(faces.images[:0], faces.landmarks[:0])
    with pytest.raises(ValueError):
        BatchSampler(empty, 16)


def test_a_flip_mirrors_the_face_and_its_landmarks():
    faces = synthetic_faces(1)
    plain = Augmentation(rotation_deg=0, scale=0, shift=0, flip=False, random_warp=False)
    flipped = Augmentation(rotation_deg=0, scale=0, shift=0, flip=True, random_warp=False)
    _, target, _, _ = BatchSampler(faces, 32, plain, seed=0).sample(1)
    sampler = BatchSampler(faces, 32, flipped, seed=0)
    for _ in range(20):  # a flip comes half the time
        _, t, m, _ = sampler.sample(1)
        if not torch.equal(t, target):
            break
    assert torch.equal(t, target.flip(3))
    mirrored = (faces.landmarks[0] + 0.5) * 32 / 64 - 0.5
    mirrored[:, 0] = 31 - mirrored[:, 0]
    # the hull is drawn once per face, kept as 8 bits and mirrored with it: a fresh drawing within 2%
    assert np.allclose(m[0, 0].numpy(), feather(hull_mask(mirrored, (32, 32)), 0, 1), atol=0.02)


def test_a_stored_mask_replaces_the_hull_and_moves_with_the_face():
    faces = synthetic_faces(2)
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[:, :, :32] = 255  # only the image's left half is face: a hand covers the right half
    masked = FaceSamples(faces.images, faces.landmarks, masks)
    still = Augmentation(rotation_deg=0, scale=0, shift=0, flip=False, random_warp=False)
    mask = BatchSampler(masked, 64, still, seed=0).sample(2).masks
    assert float(mask[:, 0, :, :24].min()) > 0.95 and float(mask[:, 0, :, 40:].max()) < 0.05
    # mirrored with the face: the kept half moves to the other side, as the hand would
    flipped = Augmentation(rotation_deg=0, scale=0, shift=0, flip=True, random_warp=False)
    mask = BatchSampler(masked, 64, flipped, seed=3).sample(16).masks
    right = mask[:, 0, :, 40:].mean(dim=(1, 2))
    assert (right > 0.95).any() and (right < 0.05).any()
    with pytest.raises(ValueError):
        FaceSamples(faces.images, faces.landmarks, masks[:, :32])


STILL = Augmentation(rotation_deg=0, scale=0, shift=0, flip=False, random_warp=False)


def test_priority_is_the_eyes_and_mouth_and_moves_with_the_face():
    faces = synthetic_faces(1)
    still = BatchSampler(faces, 32, STILL, seed=0).sample(1)
    lm = (faces.landmarks[0] + 0.5) * 32 / 64 - 0.5
    eye, mouth, nose = lm[36:42].mean(0), lm[48:60].mean(0), lm[30]
    p = still.priority[0, 0]
    assert p[int(eye[1]), int(eye[0])] > 0.5 and p[int(mouth[1]), int(mouth[0])] > 0.5
    assert p[int(nose[1]), int(nose[0])] < 0.5 and float(p.sum()) < float(still.masks[0, 0].sum()) / 2
    flips = BatchSampler(faces, 32, Augmentation(rotation_deg=0, scale=0, shift=0, flip=True, random_warp=False), seed=0)
    for _ in range(20):
        b = flips.sample(1)
        if not torch.equal(b.targets, still.targets):
            break
    assert torch.equal(b.priority, still.priority.flip(3))


def test_grayscale_batches_have_one_channel():
    b = BatchSampler(synthetic_faces(2), 16, seed=0, grayscale=True).sample(3)
    assert b.inputs.shape == b.targets.shape == (3, 1, 16, 16) and b.masks.shape == (3, 1, 16, 16)


def test_hsv_jitter_recolours_the_input_only():
    faces = synthetic_faces(2)
    plain = BatchSampler(faces, 16, STILL, seed=0).sample(8)
    for grayscale in (False, True):
        jitter = BatchSampler(faces, 16, Augmentation(rotation_deg=0, scale=0, shift=0, flip=False,
                                                      random_warp=False, hsv_jitter=0.2),
                              seed=0, grayscale=grayscale).sample(8)
        if not grayscale:  # the target keeps the true colours; the input's are shifted
            assert torch.equal(jitter.targets, plain.targets)
            assert torch.equal(jitter.masks, plain.masks)
        assert (jitter.inputs - jitter.targets).abs().amax(dim=(1, 2, 3)).min() > 0.02


def test_colour_transfer_takes_on_the_reference_colours():
    faces = synthetic_faces(3)
    prepared = prepare(faces, 16)
    reference = np.zeros_like(prepared.images)
    reference[..., 2] = 220  # all-red destination faces
    sampler = BatchSampler(prepared, 16, STILL, seed=0, colour_transfer="rct", colour_reference=reference,
                           colour_reference_masks=prepared.masks)
    b = sampler.sample(3)
    face = b.masks > 0.9
    plain = BatchSampler(prepared, 16, STILL, seed=0).sample(3)
    red = lambda t: float(t[:, 2:3][face].mean() - t[:, 0:1][face].mean())
    assert red(b.targets) > red(plain.targets) + 0.1
    with pytest.raises(ValueError):
        BatchSampler(prepared, 16, colour_transfer="rct")
    with pytest.raises(ValueError):
        BatchSampler(prepared, 16, colour_transfer="bogus", colour_reference=reference)


def test_uniform_yaw_makes_rare_poses_as_common_as_frequent_ones():
    faces = synthetic_faces(20)
    yaws = np.zeros(20, np.float32)
    yaws[:2] = 60.0  # two profiles among eighteen frontal faces
    posed = FaceSamples(faces.images, faces.landmarks, yaws=yaws)
    sampler = BatchSampler(posed, 16, Augmentation(uniform_yaw=True), seed=0)
    drawn = sampler._next_indices(2000)
    assert 0.4 < np.isin(drawn, [0, 1]).mean() < 0.6
    plain = BatchSampler(posed, 16, seed=0)._next_indices(2000)
    assert np.isin(plain, [0, 1]).mean() == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError):
        FaceSamples(faces.images, faces.landmarks, yaws=yaws[:3])


def test_without_warp_or_jitter_the_input_is_the_target():
    for grayscale in (False, True):
        b = BatchSampler(synthetic_faces(5), 16, STILL, seed=0, grayscale=grayscale).sample(6)
        assert torch.equal(b.inputs, b.targets)
