"""The one prepared GPU check (``golf-fast gpu-check``): ``driver`` (the time-boxed steps and the
report), ``kernels`` (every kernel against float64 on the device), ``pipeline`` (Hessians → GPTQ →
artifact at the record's shapes)."""
