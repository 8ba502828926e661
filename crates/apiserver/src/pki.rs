//! The lab's certificates and tokens: a CA of its own, the serving certificate (valid for every
//! name and address a client uses: 127.0.0.1, the fabric address, the `kubernetes` Service's IP
//! and DNS names), an admin client certificate for the kubeconfig, and bearer tokens (the admin's,
//! and the one mounted into pods as their service account token). Everything is made once, at
//! `lab up`, kept root-only in the lab's state directory, and only read afterwards, so a restarted
//! server presents the same identity.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Why the PKI could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("making the {what} certificate: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// The files of a lab's PKI, in one directory.
#[derive(Clone, Debug)]
pub struct Pki {
    dir: PathBuf,
}

/// Who a bearer token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenUser {
    pub token: String,
    pub user: String,
}

impl Pki {
    pub fn at(dir: &Path) -> Pki {
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    pub fn admin_cert(&self) -> PathBuf {
        self.dir.join("admin.crt")
    }
    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("admin.key")
    }
    /// `token,user` lines.
    pub fn tokens(&self) -> PathBuf {
        self.dir.join("tokens.csv")
    }

    /// Makes the CA, serving and admin certificates and the tokens, unless they exist.
    /// `hosts` are the names and addresses the serving certificate is valid for.
    pub fn ensure(&self, hosts: &[String]) -> Result<(), PkiError> {
        if self.ca_cert().exists() && self.server_cert().exists() && self.tokens().exists() {
            return Ok(());
        }
        create_private_dir(&self.dir)?;
        let gen = |what| move |source| PkiError::Generate { what, source };

        let ca_key = KeyPair::generate().map_err(gen("CA"))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(gen("CA"))?;
        ca.distinguished_name = name("weft-lab-ca", None);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).map_err(gen("CA"))?;

        let server_key = KeyPair::generate().map_err(gen("serving"))?;
        let mut server = CertificateParams::new(Vec::<String>::new()).map_err(gen("serving"))?;
        server.distinguished_name = name("kube-apiserver", None);
        server.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => h.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(gen("serving"))?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let server_cert = server
            .signed_by(&server_key, &ca_cert, &ca_key)
            .map_err(gen("serving"))?;

        let admin_key = KeyPair::generate().map_err(gen("admin"))?;
        let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(gen("admin"))?;
        admin.distinguished_name = name("kubernetes-admin", Some("system:masters"));
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let admin_cert = admin
            .signed_by(&admin_key, &ca_cert, &ca_key)
            .map_err(gen("admin"))?;

        write_private(&self.dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
        write_private(&self.ca_cert(), ca_cert.pem().as_bytes())?;
        write_private(&self.server_key(), server_key.serialize_pem().as_bytes())?;
        write_private(&self.server_cert(), server_cert.pem().as_bytes())?;
        write_private(&self.admin_key(), admin_key.serialize_pem().as_bytes())?;
        write_private(&self.admin_cert(), admin_cert.pem().as_bytes())?;
        let tokens = format!(
            "{},kubernetes-admin\n{},system:serviceaccount:default:default\n",
            random_token(),
            random_token()
        );
        write_private(&self.tokens(), tokens.as_bytes())
    }

    pub fn read_tokens(&self) -> Result<Vec<TokenUser>, PkiError> {
        let path = self.tokens();
        let text = read(&path)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                line.split_once(',')
                    .map(|(token, user)| TokenUser {
                        token: token.to_string(),
                        user: user.to_string(),
                    })
                    .ok_or_else(|| PkiError::Invalid {
                        path: path.clone(),
                        message: format!("line {line:?} is not token,user"),
                    })
            })
            .collect()
    }

    /// The token pods mount as their service account's.
    pub fn service_account_token(&self) -> Result<String, PkiError> {
        self.read_tokens()?
            .into_iter()
            .find(|t| t.user.starts_with("system:serviceaccount:"))
            .map(|t| t.token)
            .ok_or_else(|| PkiError::Invalid {
                path: self.tokens(),
                message: "no service account token".into(),
            })
    }

    pub fn read(&self, path: &Path) -> Result<String, PkiError> {
        read(path)
    }
}

fn name(common: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Makes `dir` (and any missing parent) root-only, 0700, from its creation on, so keys, tokens
/// and state inside are never readable by others, not even briefly; an existing `dir` open to
/// group or others (made by an older weft, or by hand) is closed again. Existing parents are
/// left alone: they may be shared (`/tmp`, `/var/lib`).
pub fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    // The umask may have narrowed a new directory further, never widened it; an old one may be
    // wider.
    let mode = fs::metadata(dir).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Writes a root-only file (keys and tokens must never be readable by others, not even briefly).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_root_only_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::at(&dir.path().join("pki"));
        pki.ensure(&["127.0.0.1".into(), "kubernetes.default.svc".into()])
            .unwrap();
        let ca = fs::read_to_string(pki.ca_cert()).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        for f in [pki.server_key(), pki.admin_key(), pki.tokens()] {
            let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        let tokens = pki.read_tokens().unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].token.len(), 48);
        pki.ensure(&[]).unwrap();
        assert_eq!(fs::read_to_string(pki.ca_cert()).unwrap(), ca);
        assert_eq!(mode(pki.dir()), 0o700);
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_dirs_are_root_only_from_the_start_and_tightened_when_found_open() {
        let root = tempfile::tempdir().unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        // New, with missing parents: every directory made is 0700.
        let dir = root.path().join("a/b/c");
        create_private_dir(&dir).unwrap();
        for made in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&root.path().join(made)), 0o700, "{made}");
        }
        // Found open to others: closed; the existing parent it lives in is not ours to change.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(root.path()), 0o755);
        // Already private (or narrower): left as it is.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o500);
    }
}
