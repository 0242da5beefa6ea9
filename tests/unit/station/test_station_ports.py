"""Port discovery on pyserial ``ListPortInfo`` records as each supported board enumerates on Linux."""

from __future__ import annotations

from pathlib import Path

from serial.tools.list_ports_common import ListPortInfo

from nrfprov.station.ports import find_candidates, list_all


def port(device: str, vid: int, pid: int, serial: str, location: str | None) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number, info.location = vid, pid, serial, location
    return info


# One bench: each board with all of its CDC ACM interfaces, as pyserial lists them on Linux
# (``location`` = <bus>-<port>:<config>.<interface>). The DKs' J-Link OB has three VCOMs (PID 0x1015
# with its mass storage is two, 0x1051/0x1059 three); VCOM0 (interface 0) is the nRF91's UART0.
BENCH = [
    port("/dev/ttyACM0", 0x1915, 0x9100, "THINGY91_A1B2C3", "1-1:1.0"),  # Thingy:91, nRF9160 UART0
    port("/dev/ttyACM1", 0x1915, 0x9100, "THINGY91_A1B2C3", "1-1:1.2"),  # ... its second port
    port("/dev/ttyACM2", 0x1915, 0x910A, "THINGY91X_D4E5F6", "1-2:1.0"),  # Thingy:91 X
    port("/dev/ttyACM3", 0x1915, 0x910A, "THINGY91X_D4E5F6", "1-2:1.2"),
    port("/dev/ttyACM4", 0x1366, 0x1015, "000960012345", "1-3:1.2"),  # nRF9160 DK: VCOM1 listed first
    port("/dev/ttyACM5", 0x1366, 0x1015, "000960012345", "1-3:1.0"),  # ... VCOM0, the AT port
    port("/dev/ttyACM6", 0x1366, 0x1051, "001050912345", "1-4:1.0"),  # nRF9161 DK
    port("/dev/ttyACM7", 0x1366, 0x1051, "001050912345", "1-4:1.2"),
    port("/dev/ttyACM8", 0x1366, 0x1051, "001050912345", "1-4:1.4"),
    port("/dev/ttyACM9", 0x1366, 0x1059, "001051254321", "1-5:1.0"),  # nRF9151 DK
    port("/dev/ttyACM10", 0x1366, 0x1059, "001051254321", "1-5:1.2"),
    port("/dev/ttyACM11", 0x1366, 0x1015, "000683000001", "1-6:1.0"),  # a J-Link on some other board
    port("/dev/ttyUSB0", 0x0403, 0x6001, "FT1234", "1-7:1.0"),  # an FTDI cable
]


def test_each_board_gives_exactly_its_at_port() -> None:
    found = find_candidates(comports=lambda: BENCH)
    assert [(c.port, c.board, c.usb_serial, c.hwfc) for c in found] == [
        ("/dev/ttyACM0", "Thingy:91", "THINGY91_A1B2C3", False),
        ("/dev/ttyACM2", "Thingy:91 X", "THINGY91X_D4E5F6", False),
        ("/dev/ttyACM5", "nRF9160 DK", "000960012345", True),
        ("/dev/ttyACM6", "nRF9161 DK", "001050912345", True),
        ("/dev/ttyACM9", "nRF9151 DK", "001051254321", True),
    ]


def test_serial_number_selects_boards() -> None:
    found = find_candidates(serial_numbers=["001050912345", "THINGY91_A1B2C3"], comports=lambda: BENCH)
    assert [c.port for c in found] == ["/dev/ttyACM0", "/dev/ttyACM6"]


def test_globs_leave_out_other_interfaces_and_keep_unknown_ports(tmp_path: Path) -> None:
    paths = [p.device for p in BENCH]
    found = find_candidates(["/dev/ttyACM*", "/dev/ttyUSB0"], comports=lambda: BENCH,
                            glob=lambda pat: [p for p in paths if p.startswith(pat.rstrip("*"))] if "*" in pat else [])
    # /dev/ttyUSB0 matches no glob and does not exist here: it is skipped; an unknown board is probed.
    assert [c.port for c in found] == ["/dev/ttyACM0", "/dev/ttyACM2", "/dev/ttyACM5", "/dev/ttyACM6",
                                       "/dev/ttyACM9", "/dev/ttyACM11"]
    assert next(c for c in found if c.port == "/dev/ttyACM5").hwfc


def test_macos_without_interface_numbers_takes_the_first_port() -> None:
    mac = [port("/dev/cu.usbmodem0009600123453", 0x1366, 0x1015, "000960012345", None),
           port("/dev/cu.usbmodem0009600123451", 0x1366, 0x1015, "000960012345", None)]
    assert [c.port for c in find_candidates(comports=lambda: mac)] == ["/dev/cu.usbmodem0009600123451"]


def test_list_all_names_every_port_role() -> None:
    roles = {p.port: (p.board, p.role) for p in list_all(comports=lambda: BENCH)}
    assert roles["/dev/ttyACM4"] == ("nRF9160 DK", "other interface")
    assert roles["/dev/ttyACM5"] == ("nRF9160 DK", "AT")
    assert roles["/dev/ttyUSB0"] == ("", "not a Nordic board")
    assert roles["/dev/ttyACM11"] == ("", "not a Nordic board")
