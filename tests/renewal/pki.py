"""A test CA and client certificates made with cryptography: real keys, chosen validity."""

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Ca:
    """A CA that signs client certificates as kiosk-fleet's does (P-256, clientAuth)."""

    def __init__(self, cn="CITIZENinfo test CA", *, now=NOW):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=400))
                     .not_valid_after(now + dt.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))

    def issue(self, public_key, cn, *, not_before, not_after, issuer=None):
        """A client certificate for ``public_key`` named ``cn``; ``issuer`` names another issuer
        (still signed by this CA's key)."""
        return (x509.CertificateBuilder().subject_name(name(cn))
                .issuer_name(issuer or self.cert.subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
                .sign(self.key, hashes.SHA256()))

    def sign_csr(self, csr_pem, *, not_before, not_after):
        """What the signing service does with a request: certify its key and subject."""
        csr = x509.load_pem_x509_csr(csr_pem)
        cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return self.issue(csr.public_key(), cn, not_before=not_before, not_after=not_after)


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
