"""Training stage: the SimCLR model and its training (docs/learning.md).

``vo-similarity train`` is :mod:`.cli` (light: imports nothing heavy); the work
is in :mod:`.train`, with the model (:mod:`.model`, :mod:`.backbone`), its
configuration (:mod:`.config`), the augmentations (:mod:`.augment`), the
canonical frame (:mod:`.canonical`), the images (:mod:`.data`) and the shipped
checkpoint (:mod:`.pretrained`). Embedding, evaluation and tuning, which use the
trained model, are stages of their own: :mod:`vo_similarity.embed`,
:mod:`vo_similarity.evaluate`, :mod:`vo_similarity.tune`.
"""
