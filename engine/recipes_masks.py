"""Service layer: recipes of the mask jobs (train the segmenter, apply it, render a shot's matte).

Kept beside recipes.py, which merges MASK_STAGES into its STAGES table.
"""

from __future__ import annotations

from .errors import EngineError
from .jobs import JobContext
from .workspace import Workspace

# --- mask_train and mask_apply (segmentation network) -----------------------------------------

# --- mask_matte (a shot's matte as an image sequence) -----------------------------------------


def mask_matte(ws: Workspace, params: dict, ctx: JobContext) -> dict:
    """The chosen person's face mask of every frame of a range, as gray PNGs (default folder: the
    workspace's renders/<job id>)."""
    from pathlib import Path

    from .masks.matte import MatteParams, matte_shot

    try:
        p = MatteParams.from_dict(params)
    except ValueError as exc:
        raise EngineError("bad_request", str(exc)) from None
    out_dir = Path(p.output) if p.output else ws.render_dir(ctx.job_id)
    return matte_shot(ws, p, out_dir, ctx.report, ctx.should_stop)


MASK_STAGES: dict = {"mask_matte": mask_matte}
