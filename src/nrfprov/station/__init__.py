"""Many modems at once: port discovery, a thread per device, station-wide rate limits, the batch report.

``Station(settings, StationOptions(...)).run()`` provisions every selected modem with the same
``Driver`` as ``nrfprov provision``; ``find_candidates`` and ``probe`` are ``nrfprov ports``. The CLI
(``cli/station.py``, ``cli/ports.py``) only parses options and prints; docs/station.md explains the
bench workflow.
"""

from nrfprov.station.ports import BOARDS, Candidate, PortReport, find_candidates, list_all, probe, probe_all
from nrfprov.station.report import FIELDS, Report
from nrfprov.station.runner import MAX_JOBS, Station, StationOptions, StationSummary

__all__ = ["BOARDS", "FIELDS", "MAX_JOBS", "Candidate", "PortReport", "Report", "Station", "StationOptions",
           "StationSummary", "find_candidates", "list_all", "probe", "probe_all"]
