//! Loading and checking TLS and SASL material before librdkafka sees it.
//!
//! Every certificate and key named in the configuration is read and parsed here with rustls'
//! PEM types; expired certificates and keys that do not belong to their certificate are
//! reported with the file and config field, so the operator learns about them from
//! `kmirror validate` rather than from a TLS handshake failure at 3 a.m.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kmirror_core::config::{ClientCertificate, Cluster, Located, PemSource, Problem};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The checked security material of one cluster, ready for librdkafka.
#[derive(Clone, Default)]
pub struct ClusterSecurity {
    /// Concatenated PEM of every trusted CA (`ssl.ca.pem`), if TLS is on.
    pub ca_pem: Option<String>,
    /// The files that supplied `ca_pem`, for error messages.
    pub ca_files: Vec<PathBuf>,
    /// Client certificate and key files (`ssl.certificate.location`, `ssl.key.location`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// When the client certificate expires.
    pub client_cert_not_after: Option<SystemTime>,
    /// SASL mechanism, user name and password.
    pub sasl: Option<SaslCredentials>,
}

/// SASL credentials. `Debug` never prints the password.
#[derive(Clone)]
pub struct SaslCredentials {
    /// librdkafka `sasl.mechanism`.
    pub mechanism: &'static str,
    /// User name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// Reads and checks a cluster's certificates, key and password files at time `now`.
pub fn check_cluster(cluster: &Cluster, now: SystemTime) -> Result<ClusterSecurity, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut out = ClusterSecurity::default();
    if let Some(tls) = &cluster.tls {
        let mut pem = String::new();
        for source in &tls.trusted {
            for file in expand(source, &mut problems) {
                if let Some(certs) = read_certificates(&file, &source.field, now, &mut problems) {
                    for cert in certs {
                        pem.push_str(&to_pem("CERTIFICATE", &cert));
                    }
                    out.ca_files.push(file);
                }
            }
        }
        if tls.trusted.is_empty() {
            // No CA given: librdkafka uses the system trust store, as Java does.
            out.ca_pem = None;
        } else {
            out.ca_pem = Some(pem);
        }
        if let Some(client) = &tls.client {
            out.client_cert_not_after = check_client_certificate(client, now, &mut problems);
            out.client_cert = Some((client.certificate.clone(), client.key.clone()));
        }
    }
    if let Some(sasl) = &cluster.sasl {
        if let Some(password) = read_secret_file(&sasl.password_file, &mut problems) {
            out.sasl = Some(SaslCredentials {
                mechanism: sasl.mechanism,
                username: sasl.username.clone(),
                password,
            });
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn expand(source: &Located<PemSource>, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    match &source.value {
        PemSource::File(path) => vec![path.clone()],
        PemSource::Pattern { dir, pattern } => match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| !n.starts_with("..") && glob_match(pattern, n))
                    })
                    .collect();
                files.sort();
                if files.is_empty() {
                    problems.push(Problem::new(
                        &source.field,
                        format!("no file in {} matches `{pattern}`", dir.display()),
                    ));
                }
                files
            }
            Err(e) => {
                problems.push(Problem::new(
                    &source.field,
                    format!("cannot read directory {}: {e}", dir.display()),
                ));
                Vec::new()
            }
        },
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == name;
    };
    if parts.len() == 1 {
        return pattern == name;
    }
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

fn read_file(path: &Path, field: &str, what: &str, problems: &mut Vec<Problem>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (is the Secret mounted, and --secrets-dir right?)"
            } else {
                ""
            };
            problems.push(Problem::new(
                path.display().to_string(),
                format!("cannot read {what} named by {field}: {e}{hint}"),
            ));
            None
        }
    }
}

fn read_certificates(
    path: &Path,
    field: &str,
    now: SystemTime,
    problems: &mut Vec<Problem>,
) -> Option<Vec<CertificateDer<'static>>> {
    let bytes = read_file(path, field, "the certificate", problems)?;
    let file = path.display().to_string();
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
    let certs = match certs {
        Ok(certs) if !certs.is_empty() => certs,
        Ok(_) => {
            problems.push(Problem::new(
                file,
                format!("no PEM certificate (-----BEGIN CERTIFICATE-----) found; named by {field}"),
            ));
            return None;
        }
        Err(e) => {
            problems.push(Problem::new(
                file,
                format!("invalid PEM certificate ({e}); named by {field}"),
            ));
            return None;
        }
    };
    let before = problems.len();
    for cert in &certs {
        check_validity(cert, &file, field, now, problems);
    }
    (problems.len() == before).then_some(certs)
}

/// Checks the validity period; returns `notAfter`.
fn check_validity(
    cert: &CertificateDer<'_>,
    file: &str,
    field: &str,
    now: SystemTime,
    problems: &mut Vec<Problem>,
) -> Option<SystemTime> {
    let parsed = match X509Certificate::from_der(cert.as_ref()) {
        Ok((_, parsed)) => parsed,
        Err(e) => {
            problems.push(Problem::new(
                file,
                format!("not a valid X.509 certificate ({e}); named by {field}"),
            ));
            return None;
        }
    };
    let validity = parsed.validity();
    let not_after = to_system_time(validity.not_after.timestamp());
    let not_before = to_system_time(validity.not_before.timestamp());
    let subject = parsed.subject().to_string();
    if now > not_after {
        problems.push(Problem::new(
            file,
            format!(
                "certificate `{subject}` expired on {}; named by {field}",
                validity.not_after
            ),
        ));
    } else if now < not_before {
        problems.push(Problem::new(
            file,
            format!(
                "certificate `{subject}` is not valid before {}; named by {field}",
                validity.not_before
            ),
        ));
    }
    Some(not_after)
}

fn to_system_time(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

fn check_client_certificate(
    client: &ClientCertificate,
    now: SystemTime,
    problems: &mut Vec<Problem>,
) -> Option<SystemTime> {
    let certs = read_certificates(&client.certificate, &client.field, now, problems);
    let key_file = client.key.display().to_string();
    let key_bytes = read_file(&client.key, &client.field, "the private key", problems)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_bytes) {
        Ok(key) => key,
        Err(e) => {
            problems.push(Problem::new(
                key_file,
                format!(
                    "no usable PEM private key (PKCS#8, PKCS#1 or SEC1) found ({e}); named by {}",
                    client.field
                ),
            ));
            return None;
        }
    };
    let certs = certs?;
    let leaf = certs.first()?;
    let not_after = X509Certificate::from_der(leaf.as_ref())
        .ok()
        .map(|(_, c)| to_system_time(c.validity().not_after.timestamp()));
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = match provider.key_provider.load_private_key(key) {
        Ok(k) => k,
        Err(e) => {
            problems.push(Problem::new(
                key_file,
                format!("unsupported private key ({e}); named by {}", client.field),
            ));
            return None;
        }
    };
    let cert_spki = X509Certificate::from_der(leaf.as_ref())
        .ok()
        .map(|(_, c)| c.public_key().raw.to_vec());
    if let (Some(key_spki), Some(cert_spki)) = (signing_key.public_key(), cert_spki) {
        if key_spki.as_ref() != cert_spki.as_slice() {
            problems.push(Problem::new(
                key_file,
                format!(
                    "this private key does not belong to the certificate {}; named by {}",
                    client.certificate.display(),
                    client.field
                ),
            ));
        }
    }
    not_after
}

fn read_secret_file(located: &Located<PathBuf>, problems: &mut Vec<Problem>) -> Option<String> {
    let bytes = read_file(&located.value, &located.field, "the password", problems)?;
    match String::from_utf8(bytes) {
        Ok(s) if !s.trim().is_empty() => Some(s.trim_end_matches(['\n', '\r']).to_owned()),
        Ok(_) => {
            problems.push(Problem::new(
                located.value.display().to_string(),
                format!("is empty; named by {}", located.field),
            ));
            None
        }
        Err(_) => {
            problems.push(Problem::new(
                located.value.display().to_string(),
                format!("is not UTF-8 text; named by {}", located.field),
            ));
            None
        }
    }
}

fn to_pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.crt", "ca.crt"));
        assert!(!glob_match("*.crt", "ca.key"));
        assert!(glob_match("ca.crt", "ca.crt"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }

    #[test]
    fn pem_round_trip() {
        let der = vec![0u8, 1, 2, 3, 4, 250, 251, 252, 253, 254, 255];
        let pem = to_pem("CERTIFICATE", &der);
        let back: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("parses");
        assert_eq!(back[0].as_ref(), der.as_slice());
    }
}
