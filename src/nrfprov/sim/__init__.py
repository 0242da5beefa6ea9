"""Simulated nRF91 on a pty: an independent witness for nrfprov's modem layer.

``SimulatedModem`` runs in background threads (tests, demo); ``nrfprov sim`` runs it in the
foreground. It has its own AT parser and never imports nrfprov's client layers.
"""

from nrfprov.sim.modem import SimulatedModem
from nrfprov.sim.uart import Stats

__all__ = ["SimulatedModem", "Stats"]
