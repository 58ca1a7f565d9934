//! Per-call status URLs: `/v1/status/calls/{call_id}/{signature}`, where the signature is an
//! HMAC-SHA256 of the call id under a key derived from the ingest secret. A URL is verified
//! without a database read and compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Separates this key from any other use of the ingest secret.
const KEY_CONTEXT: &[u8] = b"callhook per-call status URL v1";

#[derive(Clone)]
pub struct StatusUrlSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for StatusUrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusUrlSigner([redacted])")
    }
}

impl StatusUrlSigner {
    /// Without an ingest secret (loopback only) the key is derived from the empty string:
    /// URLs still survive restarts, but anyone who knows the scheme can forge them.
    pub fn new(ingest_secret: Option<&SecretString>) -> Self {
        let secret = ingest_secret.map_or("", |s| s.expose_secret());
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
        mac.update(KEY_CONTEXT);
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, call_id: Uuid) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(call_id.as_hyphenated().to_string().as_bytes());
        mac
    }

    pub fn sign(&self, call_id: Uuid) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(call_id).finalize().into_bytes())
    }

    /// The path of a call's status URL, relative to the public base URL.
    pub fn path(&self, call_id: Uuid) -> String {
        format!("/v1/status/calls/{call_id}/{}", self.sign(call_id))
    }

    pub fn verify(&self, call_id: Uuid, signature: &str) -> bool {
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        self.mac(call_id).verify_slice(&signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_call_and_key() {
        let signer = StatusUrlSigner::new(Some(&SecretString::from("s3cret")));
        let call = Uuid::now_v7();
        let signature = signer.sign(call);
        assert!(signer.verify(call, &signature));
        assert!(!signer.verify(Uuid::now_v7(), &signature));
        let other = StatusUrlSigner::new(Some(&SecretString::from("other")));
        assert!(!other.verify(call, &signature));
        let mut tampered = signature.into_bytes();
        tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
        assert!(!signer.verify(call, &String::from_utf8(tampered).unwrap()));
        assert!(!signer.verify(call, "not base64!"));
    }
}
