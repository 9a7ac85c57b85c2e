//! TLS and basic auth material for Prometheus's `--web.config.file`: certificates made with
//! rcgen, password hashes made with bcrypt.

/// A test PKI made with rcgen: a CA, a server certificate for 127.0.0.1/localhost and a client certificate signed by
/// it, and a second, unrelated CA. All PEM.
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub other_ca_pem: String,
}

impl TestPki {
    pub fn generate() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose, SanType,
        };
        let ca = |cn: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, cn);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
        };
        let ca_issuer = ca("prescale test CA");
        let other = ca("some other CA");
        let leaf = |cn: &str, server: bool| {
            let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params
                .subject_alt_names
                .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
            params.extended_key_usages = vec![if server {
                ExtendedKeyUsagePurpose::ServerAuth
            } else {
                ExtendedKeyUsagePurpose::ClientAuth
            }];
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca_issuer).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert_pem, server_key_pem) = leaf("prometheus", true);
        let (client_cert_pem, client_key_pem) = leaf("prescale", false);
        TestPki {
            ca_pem: ca_issuer.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
            other_ca_pem: other.pem(),
        }
    }
}

/// A bcrypt hash of `password` for Prometheus's `basic_auth_users` (cost 4: fast, it is a test).
pub fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt")
}
