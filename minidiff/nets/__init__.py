"""The networks: layers, the U-Net (chapter 03), the autoencoder (chapter 08), the text encoder and token
conditioning (chapters 10-11). Each network has one config dataclass; none reads files.
"""
