"""Stage: find faces in video frames, align them and store them in facesets."""
