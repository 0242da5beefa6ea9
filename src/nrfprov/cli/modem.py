"""``nrfprov at`` and ``nrfprov creds``: talk to an nRF91 modem directly."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nrfprov.cli.options import (
    TAG_LISTED_MAX,
    add_json_option,
    add_old_spelling,
    add_port_options,
    add_tag_argument,
    int_range,
    print_json,
    timeout_type,
)

AT_EPILOG = """\
examples:
  nrfprov at --port /dev/ttyACM0 AT+CGSN
  nrfprov at --port /dev/ttyACM0 AT+CFUN? 'AT%CMNG=1'
  nrfprov at --port socket://127.0.0.1:7000 --timeout 30 AT+CFUN=1

Prints the command's information lines; exit 3 on ERROR / +CME ERROR / no answer.
Quote commands that contain % # ? or spaces for your shell."""

CREDS_EPILOG = """\
examples:
  nrfprov creds list   --port /dev/ttyACM0
  nrfprov creds list   --port /dev/ttyACM0 16842753 --json
  nrfprov creds write  --port /dev/ttyACM0 16842753 ROOT_CA_CERT AmazonRootCA1.pem
  nrfprov creds write  --port /dev/ttyACM0 16842753 CLIENT_KEY   device.key
  nrfprov creds delete --port /dev/ttyACM0 16842753 CLIENT_CERT
  nrfprov creds delete --port /dev/ttyACM0 16842753 all
  nrfprov creds keygen --port /dev/ttyACM0 16842753 device.csr.der --attributes "CN=my-thing"

TYPE is 0..11 or a name: ROOT_CA_CERT (ca), CLIENT_CERT (cert), CLIENT_KEY (key), PSK,
PSK_IDENTITY (identity), PUBLIC_KEY, ...
Writes and deletes need the modem offline: if it is in CFUN=1/2/21, nrfprov switches to CFUN=4
and RESTORES the previous mode afterwards (Nordic's tools leave it offline). Every write is
verified against the SHA-256 the modem reports in %CMNG list. Key material is never printed."""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "at", help="send AT commands to the modem",
        description="Send AT commands to an nRF91 modem and print the reply lines.",
        epilog=AT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_port_options(p)
    p.add_argument("--timeout", type=timeout_type(), default=None,
                   help="seconds to wait per command (default: per command, 5 s for most)")
    p.add_argument("commands", nargs="+", metavar="COMMAND", help="AT command, e.g. AT+CGSN")
    p.set_defaults(func=_at)

    c = sub.add_parser(
        "creds", help="list, write, delete modem credentials (%%CMNG) and generate keys (%%KEYGEN)",
        description="Manage the credentials stored in the modem (AT%CMNG) by sec tag and type.",
        epilog=CREDS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = c.add_subparsers(dest="creds_command", metavar="SUBCOMMAND", required=True)

    ls = csub.add_parser("list", help="list stored credentials with their SHA-256",
                         description="List stored credentials: sec tag, type, SHA-256 of the content.")
    add_port_options(ls)
    add_tag_argument(ls, optional=True, what="only this sec tag", hi=TAG_LISTED_MAX)
    add_old_spelling(ls, "--tag", "tag_option", type=int_range(0, TAG_LISTED_MAX), default=None)
    ls.add_argument("--type", default=None, help="only this type (needs TAG)")
    add_json_option(ls, "JSON list on stdout")
    ls.set_defaults(func=_list)

    w = csub.add_parser("write", help="write a PEM file to a sec tag and verify it",
                        description="Write a PEM credential to TAG/TYPE, verify its SHA-256 with "
                        "%CMNG list, and restore the previous functional mode.")
    add_port_options(w)
    add_tag_argument(w)
    w.add_argument("type", metavar="TYPE", help="credential type (number or name)")
    w.add_argument("file", metavar="FILE", help="PEM file ('-' for stdin)")
    w.set_defaults(func=_write)

    d = csub.add_parser("delete", help="delete one credential, or every credential in a sec tag",
                        description="Delete TAG/TYPE, or with TYPE 'all' every credential listed in TAG "
                        "(going offline once if needed, then restoring the previous mode). Modem-reserved "
                        "tags (4294967292-4294967294) are refused.")
    add_port_options(d)
    add_tag_argument(d, what=f"sec tag, 0..{TAG_LISTED_MAX}", hi=TAG_LISTED_MAX)
    d.add_argument("type", metavar="TYPE", help="credential type (number or name), or 'all'")
    d.add_argument("--strict", action="store_true", help="fail (exit 3) if it does not exist")
    d.set_defaults(func=_delete)

    k = csub.add_parser("keygen", help="generate a key in the modem and save its CSR",
                        description="AT%KEYGEN: the modem creates an EC P-256 key in TAG (type 2; "
                        "the key never leaves the modem) and returns a CSR, saved as DER (or PEM with "
                        "--pem). The mfw 1.3.7/2.0.2 spurious-NULL CSR quirk is normalised.")
    add_port_options(k)
    add_tag_argument(k, what="sec tag for the new key, 0..2147483647")
    k.add_argument("out", metavar="OUT", help="CSR output file")
    k.add_argument("--attributes", default=None, help='CSR subject, e.g. "CN=my-thing,O=Example"')
    k.add_argument("--pem", action="store_true", help="write PEM instead of DER")
    k.set_defaults(func=_keygen)


def _open(args: argparse.Namespace) -> Any:
    from nrfprov.modem import Modem

    return Modem.open(args.port, baud=args.baud, rtscts=args.rtscts)


def _at(args: argparse.Namespace) -> int:
    from nrfprov.at.commands import command_name
    from nrfprov.errors import UsageError

    for text in args.commands:
        name = command_name(text) if text[:2].upper() == "AT" else ""
        # A binary send leaves AT mode: the modem would take the next commands as payload.
        if name == "#XSEND" and ("=" not in text or text.split(",")[1:2] == ["2"]):
            raise UsageError(f"{text}: a data-mode send cannot be driven from 'nrfprov at'",
                             hint="use the inline form AT#XSEND=<h>,0,0,\"text\" or the Python API")
    with _open(args) as m:
        for text in args.commands:
            for line in m.at(text, timeout=args.timeout):
                print(line)
    return 0


def _list(args: argparse.Namespace) -> int:
    from nrfprov.errors import UsageError
    from nrfprov.modem import CredentialType

    if args.tag_option is not None:  # the old spelling --tag N
        if args.tag is not None and args.tag != args.tag_option:
            raise UsageError(f"two sec tags given: {args.tag} and --tag {args.tag_option}")
        args.tag = args.tag_option
    ctype = CredentialType.parse(args.type) if args.type is not None else None
    if ctype is not None and args.tag is None:
        raise UsageError("--type needs a sec tag", hint="nrfprov creds list --port PORT TAG --type TYPE")
    with _open(args) as m:
        entries = m.credentials(args.tag)
    if ctype is not None:
        entries = [e for e in entries if int(e.type) == int(ctype)]
    if args.json:
        data = [{"sec_tag": e.sec_tag, "type": int(e.type), "type_name": _type_name(e.type),
                 "sha256": e.sha256} for e in entries]
        print_json(data)
        return 0
    if not entries:
        print("no credentials stored" + (f" in sec tag {args.tag}" if args.tag is not None else ""))
        return 0
    print(f"{'SEC TAG':>10}  {'TYPE':<28}  SHA-256")
    for e in entries:
        print(f"{e.sec_tag:>10}  {int(e.type):>2} {_type_name(e.type):<25}  {e.sha256 or '-'}")
    return 0


def _type_name(t: object) -> str:
    return getattr(t, "name", "UNKNOWN")


def _write(args: argparse.Namespace) -> int:
    from nrfprov.errors import UsageError
    from nrfprov.files import PEM_LIMIT, read_stdin_bounded, read_text_bounded
    from nrfprov.modem import CredentialType
    from nrfprov.modem.credentials import is_private_key
    from nrfprov.modem.facade import ACTIVE_MODES

    ctype = CredentialType.parse(args.type)
    if args.file == "-":
        try:
            text = read_stdin_bounded(PEM_LIMIT, "credential").decode("ascii")
        except UnicodeDecodeError as exc:
            raise UsageError(f"standard input is not ASCII text (byte {exc.start})") from exc
    else:
        text = read_text_bounded(args.file, PEM_LIMIT, "credential file")
    # Catch the classic mix-ups before the modem answers a bare 527.
    if ctype is CredentialType.CLIENT_KEY and not is_private_key(text):
        raise UsageError(f"{args.file} holds no PEM private key, but TYPE is CLIENT_KEY")
    if ctype in (CredentialType.ROOT_CA_CERT, CredentialType.CLIENT_CERT):
        if is_private_key(text):
            raise UsageError(f"{args.file} holds a private key, but TYPE is {ctype.name}",
                             hint="use CLIENT_KEY (2) for keys")
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise UsageError(f"{args.file} holds no PEM certificate, but TYPE is {ctype.name}")
    with _open(args) as m:
        mode = m.cfun()
        if mode in ACTIVE_MODES:
            print(f"modem is in CFUN={mode}: going offline (CFUN=4) for the write, then back to "
                  f"CFUN={mode}", file=sys.stderr)
        sha = m.write_credential(args.tag, ctype, text)
    print(f"sec tag {args.tag} type {int(ctype)} ({ctype.name}) written; SHA-256 verified: {sha}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    from nrfprov.errors import UsageError
    from nrfprov.modem import CredentialType
    from nrfprov.modem.credentials import RESERVED_TAGS

    if args.tag in RESERVED_TAGS:
        raise UsageError(f"sec tag {args.tag} is reserved by the modem; nrfprov does not touch it")
    if args.type.lower() == "all":
        with _open(args) as m:
            entries = m.credentials(args.tag)
            with m.offline():  # one CFUN round trip for the whole tag
                for e in entries:
                    m.delete_credential(e.sec_tag, e.type)
                    print(f"sec tag {e.sec_tag} type {int(e.type)} ({_type_name(e.type)}) deleted")
        if not entries:
            print(f"sec tag {args.tag} holds no credentials; nothing to delete")
        return 0
    ctype = CredentialType.parse(args.type)
    with _open(args) as m:
        existed = m.delete_credential(args.tag, ctype, missing_ok=not args.strict)
    what = f"sec tag {args.tag} type {int(ctype)} ({ctype.name})"
    print(f"{what} deleted" if existed else f"{what} was not stored; nothing to delete")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    import os

    with _open(args) as m:
        der = m.keygen_csr(args.tag, attributes=args.attributes)
    data = der
    if args.pem:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        data = x509.load_der_x509_csr(der).public_bytes(Encoding.PEM)
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # a CSR is public
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    print(f"key generated in sec tag {args.tag} (type 2, stays in the modem); CSR written to {args.out}")
    return 0
