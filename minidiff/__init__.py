"""minidiff: diffusion models from scratch, one explicit module per idea.

schedule -> forward -> (unet, train, samplers) -> autoencoder -> text -> pipeline.
"""

__version__ = "0.1.0"
