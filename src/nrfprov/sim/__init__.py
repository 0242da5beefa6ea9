"""Simulated nRF91 on a pty: an independent witness for nrfprov's modem layer.

``SimulatedModem`` runs in background threads (tests, demo); ``nrfprov sim`` runs it in the
foreground. It has its own AT parser and never imports nrfprov's client layers.
``SimulatedModem(..., network="nb-iot")`` (or a :class:`NetworkProfile`) puts a radio between the
modem's sockets and the internet; the default is ``"ideal"``.
"""

from nrfprov.sim.modem import SimulatedModem
from nrfprov.sim.network import PROFILES, NetworkProfile
from nrfprov.sim.uart import Stats

__all__ = ["PROFILES", "NetworkProfile", "SimulatedModem", "Stats"]
