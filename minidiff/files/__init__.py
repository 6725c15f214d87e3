"""Everything that touches the disk or picks a device, and nothing that builds a network: checkpoint files
(safetensors + JSON, written atomically, checked by sha256), training states, image files, the device.
"""
