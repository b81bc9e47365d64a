"""Stage: learned face masks (XSeg-style segmentation trained from hand-drawn labels), applied to
facesets, and mattes of a shot for Blender's strip modifiers."""
