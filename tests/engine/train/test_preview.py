"""Tests for engine.train.preview: the preview grid, the loss graph and their atomic PNG writes."""

import cv2
import numpy as np
import pytest

from engine.train.preview import loss_graph, preview_grid, write_png


def faces(n: int, r: int, c: int, value: int) -> np.ndarray:
    return np.full((n, r, r, c), value, np.uint8)


def test_grid_lays_columns_side_by_side_under_a_title_row():
    grid = preview_grid([faces(3, 64, 3, 10), faces(3, 64, 3, 200)], ["src", "swap"])
    assert grid.dtype == np.uint8 and grid.shape[2] == 3
    title = grid.shape[0] - 3 * 64
    assert title > 0 and grid.shape[1] == 2 * 64
    assert (grid[title:, :64] == 10).all() and (grid[title:, 64:] == 200).all()


def test_grid_shows_grayscale_beside_colour_and_uses_the_shortest_column():
    grid = preview_grid([faces(4, 32, 1, 90), faces(2, 32, 3, 30)], ["gray", "colour"])
    cell = grid.shape[1] // 2
    assert grid.shape[0] - 2 * 32 > 0  # two rows: the shorter column decides
    assert (grid[-32:, (cell - 32) // 2: (cell - 32) // 2 + 32] == 90).all()


def test_grid_needs_a_title_per_column():
    with pytest.raises(ValueError):
        preview_grid([faces(1, 16, 3, 0)], [])


def test_loss_graph_draws_both_curves_and_phase_marks():
    its = list(range(0, 1000, 10))
    src = [1.0 / (1 + i / 100) for i in its]
    dst = [0.8 / (1 + i / 100) for i in its]
    graph = loss_graph(its, src, dst, [(500, "refine")], size=(320, 120))
    assert graph.shape == (120, 320, 3) and graph.dtype == np.uint8
    for colour in ((80, 160, 255), (255, 190, 60), (120, 220, 120)):
        assert (graph == colour).all(-1).any(), colour


def test_loss_graph_copes_with_nothing_one_point_and_nan():
    assert loss_graph([], [], [], []).shape == (240, 640, 3)
    assert loss_graph([5], [0.5], [0.4], []).shape == (240, 640, 3)
    assert loss_graph([1, 2, 3], [float("nan"), 0.3, 0.3], [0.2, 0.2, 0.2], [(9, "gan")]).shape == (240, 640, 3)


def test_write_png_round_trips_and_leaves_no_temp_file(tmp_path):
    image = preview_grid([faces(2, 16, 3, 77)], ["src"])
    write_png(tmp_path / "preview.png", image)
    assert np.array_equal(cv2.imread(str(tmp_path / "preview.png")), image)
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]
