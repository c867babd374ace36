"""The embedded backbone: the small AST the package ships (``backbone/``, checked against its record by ``record.py``) and how the
tool pretrains it (``pretrain.py``: masked spectrogram modelling, ``masked.py``, scored by a linear probe, ``probe.py``)."""
