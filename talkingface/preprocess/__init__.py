"""Preprocessing: raw talking-head videos to an official-layout dataset.

decode (PyAV) -> face detection and crop (MediaPipe) -> 478 landmarks (MediaPipe Face
Mesh with iris, smoothed over time) -> identity embedding (dlib, 128-d) -> alignment
theta (ArcFace 5-point template) -> official layout plus meta.json.

Modules: `sources` (inputs, sharding, frame streams), `scenes` (streaming scene-cut
detector), `detect` (boxes and crops), `landmarks` (Face Mesh, smoothing, pose),
`identity` (dlib descriptor), `align` (theta), `segments` (shots of one input, grouped
by person), `pipeline` (one video), `store` (resumable, atomic dataset writes),
`preview`, `validate`, `merge`. Heavy libraries are imported inside functions.
"""
