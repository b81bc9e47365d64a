"""Shared piece: video decoding, frame and video encoding."""
