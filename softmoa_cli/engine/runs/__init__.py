"""The run folder: writing it as training goes (``folder.py``), reading a finished run back, its
model card (``model_card.py``) and what of it travels to the Hub (``sharing.py``, ``public.py``)."""
