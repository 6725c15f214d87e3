"""The photograph that ships with minidiff: loaded offline, at any size."""

import socket

import numpy as np

from minidiff.data.photo import photo


def test_photo_loads_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("photo() must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    image = photo()
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.std() > 20, "a photograph, not a flat colour"
    small = photo(32)
    assert small.shape == (32, 32, 3)
    assert np.array_equal(photo(), image)
