//! Mutual TLS for [`TcpTransport`](crate::TcpTransport) links (rustls, `ring` crypto provider,
//! TLS 1.3 only).
//!
//! **Trust model: certificate pinning.** Each party has a key pair and a (typically self-signed)
//! certificate; the deployment's configuration lists the certificate of every party. On each link
//! both sides present their certificate and each checks that the peer's end-entity certificate is,
//! byte for byte, the one configured for the party id it expects on that link, and that the peer
//! proves possession of its key in the TLS 1.3 handshake. No certificate authority, host name or
//! validity period is involved, which is exactly right for three known machines: there is nothing
//! to misissue, and nothing that a party could present in place of another's certificate. (A
//! per-deployment CA would let a fourth certificate impersonate a party whenever the CA key leaks;
//! pinning keeps the trust decision in the configuration file.) To rotate a key, replace the
//! certificate in every party's configuration.
//!
//! The three certificates must differ: the certificate is what tells a listener which party
//! connected.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError, ServerConfig, SignatureScheme,
};

use crate::NetError;

/// One party's TLS identity: its certificate and key, and the pinned certificates of all three
/// parties. Build it once and hand it to [`TcpSetup`](crate::TcpSetup).
#[derive(Clone)]
pub struct TlsIdentity {
    me: usize,
    certs: [CertificateDer<'static>; 3],
    /// Client configurations for connecting to each party (pinned to that party's certificate).
    clients: [Arc<ClientConfig>; 3],
    /// Server configuration accepting the parties with a higher id than `me`.
    server: Arc<ServerConfig>,
}

impl fmt::Debug for TlsIdentity {
    // The key is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity").field("me", &self.me).finish_non_exhaustive()
    }
}

/// The error a pinning verifier reports for a certificate other than the configured one.
#[derive(Debug)]
struct NotPinned {
    expected: String,
}

impl fmt::Display for NotPinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the certificate presented is not the one configured for {}", self.expected)
    }
}

impl std::error::Error for NotPinned {}

fn not_pinned(expected: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(NotPinned { expected }))))
}

/// Accepts exactly the listed certificates; checks handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct Pinned {
    /// `(party id, certificate)` pairs that are accepted.
    allowed: Vec<(usize, CertificateDer<'static>)>,
    algs: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.allowed.iter().any(|(_, c)| c.as_ref() == end_entity.as_ref()) {
            Ok(())
        } else {
            let ids: Vec<String> = self.allowed.iter().map(|(p, _)| format!("party {p}")).collect();
            Err(not_pinned(ids.join(" or ")))
        }
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn config_err(e: impl fmt::Display) -> NetError {
    NetError::Io(format!("TLS configuration: {e}"))
}

impl TlsIdentity {
    /// Party `me`'s identity from PEM text: the certificates of parties 0, 1 and 2 (in that order;
    /// `certs[me]` is this party's own) and this party's private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(me: usize, certs: [&[u8]; 3], key: &[u8]) -> Result<Self, NetError> {
        let mut parsed = Vec::with_capacity(3);
        for (i, pem) in certs.iter().enumerate() {
            let c = CertificateDer::from_pem_slice(pem)
                .map_err(|e| NetError::Io(format!("certificate of party {i}: not a PEM certificate ({e})")))?;
            parsed.push(c);
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| NetError::Io(format!("private key of party {me}: not a PEM private key ({e})")))?;
        let certs: [CertificateDer<'static>; 3] =
            parsed.try_into().unwrap_or_else(|_| unreachable!("three certificates parsed"));
        Self::from_der(me, certs, key)
    }

    /// Party `me`'s identity from DER certificates of parties 0, 1, 2 and this party's key.
    pub fn from_der(
        me: usize,
        certs: [CertificateDer<'static>; 3],
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, NetError> {
        if me > 2 {
            return Err(NetError::Io(format!("party id {me} is not 0, 1 or 2")));
        }
        for i in 0..3 {
            for j in i + 1..3 {
                if certs[i] == certs[j] {
                    return Err(NetError::Io(format!(
                        "parties {i} and {j} have the same certificate: each party needs its own"
                    )));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algs = provider.signature_verification_algorithms;
        let versions = &[&rustls::version::TLS13];
        let client_for = |peer: usize| -> Result<Arc<ClientConfig>, NetError> {
            let verifier = Arc::new(Pinned { allowed: vec![(peer, certs[peer].clone())], algs });
            let mut cfg = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(config_err)?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_auth_cert(vec![certs[me].clone()], key.clone_key())
                .map_err(|e| config_err(format!("party {me}'s key and certificate: {e}")))?;
            cfg.resumption = rustls::client::Resumption::disabled();
            Ok(Arc::new(cfg))
        };
        let clients = [client_for(0)?, client_for(1)?, client_for(2)?];
        // The listener accepts the parties with a higher id (they connect to us).
        let allowed: Vec<_> = (me + 1..3).map(|p| (p, certs[p].clone())).collect();
        let verifier = Arc::new(Pinned { allowed, algs });
        let mut server = ServerConfig::builder_with_provider(provider.clone() as Arc<CryptoProvider>)
            .with_protocol_versions(versions)
            .map_err(config_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![certs[me].clone()], key)
            .map_err(|e| config_err(format!("party {me}'s key and certificate: {e}")))?;
        server.send_tls13_tickets = 0;
        Ok(TlsIdentity { me, certs, clients, server: Arc::new(server) })
    }

    /// This party's id.
    pub fn me(&self) -> usize {
        self.me
    }

    /// A client connection to party `peer`, which must present `peer`'s certificate.
    pub(crate) fn client(&self, peer: usize) -> Result<rustls::Connection, NetError> {
        let name = ServerName::try_from(format!("party{peer}.cryptgpu")).map_err(config_err)?;
        let conn = rustls::ClientConnection::new(self.clients[peer].clone(), name).map_err(config_err)?;
        Ok(conn.into())
    }

    /// A server connection accepting any party with a higher id than this one.
    pub(crate) fn server(&self) -> Result<rustls::Connection, NetError> {
        Ok(rustls::ServerConnection::new(self.server.clone()).map_err(config_err)?.into())
    }

    /// Which party presented `cert` (after a successful handshake).
    pub(crate) fn party_of(&self, cert: &CertificateDer<'_>) -> Option<usize> {
        self.certs.iter().position(|c| c.as_ref() == cert.as_ref())
    }
}
