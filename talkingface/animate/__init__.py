"""`animate`: drive any portrait (photo or video) with any talking-head video.

Modules: `faces` (finding and tracking the face in full frames), `motion` (driving
landmarks -> landmarks for the source crop: relative or absolute, best reference
frame), `pasteback` (the generated crop back into the full source frame), `pipeline`
(the streaming pipeline). The options and wiring are in `talkingface.recipes.animate`.
Heavy libraries are imported inside functions.
"""
