"""LoRA fine-tuning on the user's own images (DreamBooth style).

dataset.py reads and checks an image folder; config.py holds the job settings and device presets; trainer.py
trains (no Qt); checkpoint.py and export.py write state and LoRA files; run.py is the separate process the
window and the CLI start (JSON lines out, pause/cancel in); originality.py compares samples with the
training images.
"""
