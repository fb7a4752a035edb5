"""Evaluation-time adaptation, score-first: one entry point (``run.run_adaptive``) over the drivers.

* ``config`` — :class:`AdaptConfig` (``eval.adapt`` of the train config); ``run`` — the ``{mode: driver}`` table;
  ``result`` — :class:`AdaptResult` (val_bpb, the compliance verdict, the event log);
* drivers: ``stream`` (stream-order full-model TTT with AdamW, causal SLOT, the baseline),
  ``documents`` (per-document LoRA TTT and the phased global SGD on top of it),
  ``research_modes`` (the seed submissions' non-compliant methods, flagged);
* parts: ``lora`` (per-document adapters), ``full_model`` (full-parameter steps, cosine lr),
  ``slot`` (the logit delta δ), ``schedule`` (the record's document batches and phase plan),
  ``global_sgd`` (one phase of the record's global SGD); ``predict_time`` (predicted 8×H100 time of
  a mode, not measured).
"""
