"""``golf-rans``, the package's own artifact codec: context-modelled static rANS over int codes.

``coder`` (the model, the format and the exact decoding procedure; the pure-Python coder),
``fit`` (the encoder's choice of context model per group), ``codec`` (groups, side information,
payload layout: the :class:`~golf_fast.artifact.codec_base.Codec`), ``side`` (the side information,
validated before anything is allocated), ``numpy_coder`` (the vectorized decoder for machines
without the compiled extension), ``portable`` / ``portable_src`` (the plain-C decoder compiled at
load with the system C compiler, ctypes), ``rowdelta`` (row differences in a stored row order),
``embcm`` / ``embcm_src`` / ``embcm_ref`` (the embedding coder: a context-mixing arithmetic coder for
groups whose rows are similarity-ordered, and its row orders; C compiled at load and its pure-Python
reference), ``permcode`` (row orders stored as their Lehmer rank, side information version 6),
``cm`` / ``cm_src`` (an experimental context-mixing coder over all roles, measured by the compression
benchmark; not an artifact codec)."""
