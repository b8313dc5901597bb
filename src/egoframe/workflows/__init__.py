"""egoframe's multi-step jobs: each runs the workflows below it (data, training, generation, metrics) as named,
resumable stages on one stage runner (:mod:`.stages`), and only the faces (CLI, demo, study) call them.

- :mod:`.quickstart`: `egoframe quickstart`, the whole LEGO recipe on a small world in minutes;
- :mod:`.recipe`: `egoframe recipe`, the shipped embedded default from nothing;
- :mod:`.eval_world`: `egoframe eval-world`, the protocol every figure about a model on the embedded world uses;
- :mod:`.reproduce`: `egoframe reproduce --world`, Tables 1 and 3 on the embedded world;
- :mod:`.siblings_compare`: `egoframe sibling compare`, SmartEdit, MGIE and ReasonPix2Pix side by side.

Nothing heavy is imported here.
"""
