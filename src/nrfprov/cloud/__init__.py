"""Local AWS IoT Core stand-in: mTLS mosquitto with AWS-like policies and a provisioning responder.

An independent witness for the client layers: it uses plain paho-mqtt, ``ssl``, ``cryptography``,
cbor2 and json, never nrfprov's own transport/mqtt/provisioning code.

    from nrfprov.cloud import LocalAwsIot
    with LocalAwsIot(tmp_path) as cloud:
        cloud.host, cloud.port, cloud.server_name, cloud.ca_path, cloud.claim_cert_path, ...
"""

from nrfprov.cloud.local import CLAIM_CN, RESPONDER_CN, LocalAwsIot
from nrfprov.cloud.registry import CertificateRecord

__all__ = ["CLAIM_CN", "RESPONDER_CN", "CertificateRecord", "LocalAwsIot"]
