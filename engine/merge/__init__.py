"""Stage: put the swapped face back into every destination frame."""
