"""The maths of diffusion, in torch alone (no files, no images on disk, no plots): noise schedules and noise levels,
the forward process and what a network can predict, the reverse steps, the one sampling loop, guidance and editing.

Chapters 01-02 (schedule, forward), 04 (loss), 05-07 (steps, loop, timesteps, samplers, dpm_solver, guidance),
13 (editing); `config` holds the diffusion settings a model is trained and saved with.
"""
