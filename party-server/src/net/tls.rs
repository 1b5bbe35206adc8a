//! Authentication of the inter-party links: mutual TLS 1.3 where each side
//! accepts exactly one certificate, the one the cluster config names for the
//! party it expects.
//!
//! There is no certificate authority: the three operators exchange their
//! self-signed certificates out of band (they are public) and each pins the
//! other two.  A party that dials presents its certificate and accepts only
//! its next neighbour's; a party that accepts requires a client certificate
//! and accepts only its previous neighbour's.  Anyone else — an unknown key,
//! no certificate, or the wrong configured party — fails the handshake.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Errors loading or generating credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A party's own certificate and private key.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> CredentialError {
    CredentialError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads one PEM certificate.
pub fn load_cert(path: &Path) -> Result<CertificateDer<'static>, CredentialError> {
    CertificateDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

impl Identity {
    pub fn load(cert: &Path, key: &Path) -> Result<Identity, CredentialError> {
        Ok(Identity {
            cert: load_cert(cert)?,
            key: PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?,
        })
    }
}

/// A fresh self-signed ECDSA P-256 certificate for `name`, as PEM
/// `(certificate, private key)`.
pub fn generate(name: &str) -> Result<(String, String), CredentialError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The provider: ring, TLS 1.3 suites with AES-128-GCM first (the fastest
/// with AES-NI, which matters for a link that carries gigabytes).
fn provider() -> Arc<CryptoProvider> {
    let mut p = ring::default_provider();
    p.cipher_suites = vec![
        ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// Accepts exactly one certificate (by its DER bytes) and checks the
/// handshake signature against it.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    algs: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn check(&self, presented: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if presented.as_ref() == self.cert.as_ref() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
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
        self.check(end_entity)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn pinned(provider: &CryptoProvider, cert: CertificateDer<'static>) -> Arc<Pinned> {
    Arc::new(Pinned {
        cert,
        algs: provider.signature_verification_algorithms,
    })
}

/// TLS config for dialing the next party: present `me`, accept only `peer`.
pub fn client_config(
    me: &Identity,
    peer: CertificateDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, CredentialError> {
    let p = provider();
    let cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(pinned(&p, peer))
        .with_client_auth_cert(vec![me.cert.clone()], me.key.clone_key())?;
    Ok(Arc::new(cfg))
}

/// TLS config for accepting the previous party: present `me`, require a
/// client certificate and accept only `peer`.
pub fn server_config(
    me: &Identity,
    peer: CertificateDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, CredentialError> {
    let p = provider();
    let cfg = rustls::ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(pinned(&p, peer))
        .with_single_cert(vec![me.cert.clone()], me.key.clone_key())?;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(name: &str) -> Identity {
        let (c, k) = generate(name).unwrap();
        Identity {
            cert: CertificateDer::from_pem_slice(c.as_bytes()).unwrap(),
            key: PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
        }
    }

    #[test]
    fn pinning_accepts_only_the_named_certificate() {
        let (a, b) = (identity("party0"), identity("party1"));
        let pin = pinned(&provider(), a.cert.clone());
        assert!(pin.check(&a.cert).is_ok());
        assert!(pin.check(&b.cert).is_err());
    }

    #[test]
    fn generated_credentials_build_both_configs() {
        let (a, b) = (identity("party0"), identity("party1"));
        assert!(client_config(&a, b.cert.clone()).is_ok());
        assert!(server_config(&b, a.cert.clone()).is_ok());
    }
}
