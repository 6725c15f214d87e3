"""Measuring what models draw: the digit classifier and the Fréchet distance in its features, the Shapes attribute
checker, prompt adherence, and the sampler race (chapter 06).
"""
