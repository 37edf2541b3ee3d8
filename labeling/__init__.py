"""Active learning: embeddings, the reward-model ensemble, acquisition and routing.

Modules, in the order the loop uses them:

* `encoder`: Hugging Face encoder + the embedding cache in the store (`embeddings`).
* `features`: feature blocks for (prompt, response) built from cached embeddings.
* `ensemble`: K Bradley-Terry reward heads, fitted and scored in one vectorised pass,
  saved in the `prefloop-ensemble/1` artifact format (docs/ENSEMBLE_ARTIFACT.md).
* `scoring`: `prefloop score`: fit a new ensemble version and score every pair.
* `acquisition`: variance, BALD, entropy, random; diverse batches (k-center greedy).
* `router`: `prefloop route`: human budget, calibration slice, promoted flags, judge queue.
* `simdata`, `benchmark`, `benchmark_report`: the label-efficiency benchmark.

Depends on `data` only (tests/test_layering.py).
"""
