"""Speech to a talking face's landmarks, offline (`talkingface speak`).

Three parts, each usable alone: `align` (phonemes with start and end times, from audio,
with pocketsphinx: forced alignment with a transcript, phoneme recognition without),
`visemes` (the phoneme-to-viseme table and each viseme's mouth landmark offsets on a
given face) and `track` (the track builder: coarticulation, closed lips on p/b/m, idle
head motion and blinks; per-frame landmarks in chunks). `espeak` runs espeak-ng for
speech from text and for pronunciations. Nothing here imports the recipes.
"""
