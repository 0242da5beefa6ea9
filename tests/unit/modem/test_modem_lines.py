"""Modem-line ioctls on a pty: pyserial raises ENOTTY for DTR there; opening must not fail on it."""

from __future__ import annotations

import errno
import os

import pytest
import serial

from nrfprov.errors import ModemLinkError
from nrfprov.modem.facade import _assert_dtr


def test_dtr_on_a_pty_is_ignored() -> None:
    master, slave = os.openpty()
    port = serial.Serial(os.ttyname(slave))
    try:
        with pytest.raises(OSError) as info:  # the premise: a pty has no modem lines
            port.dtr = True
        assert info.value.errno in (errno.ENOTTY, errno.EINVAL)
        _assert_dtr(port)  # and we accept exactly that
    finally:
        port.close()
        os.close(slave)
        os.close(master)


class _BrokenLines:
    @property
    def dtr(self) -> bool:
        return False

    @dtr.setter
    def dtr(self, value: bool) -> None:
        raise OSError(errno.EIO, "I/O error")


def test_other_line_errors_are_reported() -> None:
    with pytest.raises(ModemLinkError):
        _assert_dtr(_BrokenLines())
