"""Size limits of the nRF91 AT interface, each with its source.

Each limit below names its primary source (sdk-nrf serial_lte_modem, ncs-serial-modem, sdk-nrfxlib).
"""

from __future__ import annotations

#: Longest AT command the modem accepts, terminator included: the SLM/SM AT buffer and the modem
#: library's ``NRF_MODEM_AT_MAX_CMD_SIZE`` are 4096 bytes; longer lines are answered ``ERROR``
#: [sdk-nrf ``slm_defines.h``; sdk-nrfxlib ``nrf_modem_limits.h``].
COMMAND_MAX = 4096

#: Longest formatted response line the SLM emits (``SLM_AT_MAX_RSP_LEN`` 2100 bytes)
#: [sdk-nrf ``applications/serial_lte_modem/src/slm_defines.h``].
RESPONSE_LINE_MAX = 2100

#: A quoted, multi-line value in a reply (``%CMNG`` read returns a PEM inside quotes, line breaks
#: included). It was written with one command, so it cannot exceed COMMAND_MAX; the prefix and
#: hash around it fit in one response line.
QUOTED_VALUE_MAX = COMMAND_MAX + RESPONSE_LINE_MAX

#: Most payload bytes one ``#XRECV`` returns: ``NRF_SOCKET_TLS_MAX_MESSAGE_SIZE`` = 2048, and the
#: SM ``AT#XRECV`` ``<len>`` parameter is capped at 2048 [sdk-nrfxlib ``nrf_socket.h``;
#: ncs-serial-modem ``doc/app/at_socket.rst``].
RECV_MAX = 2048

#: Most bytes one data-mode send carries: the data-mode buffer is 4096 bytes by default
#: (``CONFIG_SM_DATAMODE_BUF_SIZE`` / SLM equivalent; older builds 3884) [SLM ``slm_data_mode.rst``].
DATAMODE_SEND_MAX = 4096

#: Largest message on a modem TLS socket: 2048 bytes [sdk-nrfxlib ``nrf_modem/doc`` limits].
TLS_SEND_MAX = 2048

#: Backstop for bytes received but not yet parsed. The shell reads at most READ_CHUNK bytes and
#: drains every event after each read, so more than a few chunks pending means a caller bug.
READ_CHUNK = 4096
BUFFER_MAX = 4 * READ_CHUNK + QUOTED_VALUE_MAX
