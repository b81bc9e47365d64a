"""Quality report piece: does the swapped face look like the source person, frame by frame.

Identity is measured with dlib's face recognition descriptors (the optional identity extra): two
faces of one person lie ~0.2-0.4 apart (two clips of Obama: 0.39), two people ~0.85-0.95 (on the
training clips of ../shared/data/faces/train), and dlib calls 0.6 the line between.
Each identity is summed up by its mean descriptor (a reference), taken over many faces, so one odd
frame of the source does not decide; a swapped face is then judged by its distance to the source's
reference and to the destination's. Distances to a mean run a little shorter than between two faces.
"""

from __future__ import annotations

import numpy as np

from .types import FaceObservation, aggregate

SAME_PERSON = 0.6  # dlib's threshold: descriptors closer than this are taken for one person


def identity_reference(embeddings: np.ndarray | None) -> np.ndarray | None:
    """The mean descriptor of one identity's faces (None without any)."""
    if embeddings is None:
        return None
    e = np.asarray(embeddings, np.float64).reshape(-1, 128)
    e = e[np.isfinite(e).all(1)]
    return e.mean(0) if len(e) else None


def identity_row(result: FaceObservation | None, source_ref: np.ndarray | None,
                 destination_ref: np.ndarray | None) -> dict | None:
    """The swapped face's distances to both identities; None without an embedding (or a reference)."""
    if result is None or result.embedding is None or source_ref is None or destination_ref is None:
        return None
    e = np.asarray(result.embedding, np.float64)
    to_source = float(np.linalg.norm(e - source_ref))
    to_destination = float(np.linalg.norm(e - destination_ref))
    return {"to_source": to_source, "to_destination": to_destination,
            "closer_to_source": to_source < to_destination}


def identity_summary(rows: list[dict | None], baseline: list[float]) -> dict:
    """Aggregates over the frames; `baseline` holds the untouched destination's distances to the source.

    The baseline is the context a distance needs: a swap that moves the face from the baseline
    towards zero has moved it towards the source, whatever the two people's own likeness.
    """
    kept = [r for r in rows if r is not None]
    return {
        "available": True,
        "to_source": aggregate(r["to_source"] for r in kept),
        "to_destination": aggregate(r["to_destination"] for r in kept),
        "closer_to_source": sum(bool(r["closer_to_source"]) for r in kept) / len(kept) if kept else None,
        "destination_to_source": aggregate(baseline),
        "threshold": SAME_PERSON,
    }
