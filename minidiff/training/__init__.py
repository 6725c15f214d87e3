"""Training: the settings of a run (`config`) and its presets, the data it reads, the loop with exact resume
(chapters 04 and 09), and the autoencoder's training (chapter 08).
"""
