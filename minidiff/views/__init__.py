"""What the chapters show: matplotlib figures (`plots`), widgets and their static book versions (`widgets`), step
views of denoising in pixels and in latents, and the sampler race's figures. Nothing in the package imports views.
"""
