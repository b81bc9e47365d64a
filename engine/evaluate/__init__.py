"""Stage: the quality report (`python -m engine evaluate`, the add-on's Evaluate button).

Judges a swap the way a viewer does, by numbers and a summary sheet: does the face look like the
source person (identity), does it keep the destination's expression and head pose (landmarks, pose),
does it flicker more than the destination did, are there seams at the mask border, and how well the
model rebuilds faces it never trained on.

- types.py: what the pieces hand each other (a face observation, aggregates, headline names);
- observe.py: the main face of each frame (landmarks, pose, identity embedding);
- identity.py, expression.py: the per-frame identity and expression/pose figures;
- temporal.py, seams.py: flicker inside the face and the colour/gradient step across the mask border;
- reconstruct.py: the model's reconstruction SSIM on held-back faces (engine/holdout.py), crops.py the
  faces cut as training cut them (and the even spread every sample here is taken with);
- inputs.py: the clips, frame folders and merge outputs a report reads;
- sheet.py: the PNG summary sheet (its cards and sample rows; plots.py its plots over time, canvas.py
  the palette and text both draw with); report.py: one pass over the shot, the JSON and the sheet.
"""
