//! Certificates generated per test with rcgen: a CA, and leaf certificates signed by it.

use std::fs;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A test certificate authority.
pub struct Pki {
    pub ca_pem: String,
    params: CertificateParams,
    key: KeyPair,
}

/// A certificate and its private key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            params,
            key,
        }
    }

    /// A leaf for `names` (DNS names or IP addresses), valid now unless `expired`.
    pub fn leaf(&self, common_name: &str, names: &[&str], expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Writes a Secret the way Kubernetes mounts it: `<dir>/<secret>/<key>`.
pub fn write_secret(dir: &Path, secret: &str, entries: &[(&str, &str)]) {
    let d = dir.join(secret);
    fs::create_dir_all(&d).unwrap();
    for (k, v) in entries {
        fs::write(d.join(k), v).unwrap();
    }
}
