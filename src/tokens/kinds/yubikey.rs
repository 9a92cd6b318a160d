//! YubiKeys in Yubico OTP mode, validated here: the private id and AES key are sealed, the
//! public id is kept in clear (every OTP shows it). Also what the validation-server kind
//! shares: the public id's checks and the OTP's shape.

use crate::model::{Token, TokenKind};
use crate::tokens::class::{EnrolError, Enrolment, Opt, Options, Services, TokenClass};
use crate::tokens::yubico;
use crate::tokens::{Claim, Match, Miss};
use zeroize::Zeroizing;

impl TokenKind {
    #[allow(non_upper_case_globals)]
    pub const Yubikey: TokenKind = TokenKind::named("yubikey");
}

pub struct Yubikey;

pub const PUBLIC_ID: Opt = Opt::value(
    "public-id",
    "MODHEX",
    "The public id, 12 modhex characters (the first 12 of every OTP)",
)
.required();
static OPTIONS: [Opt; 3] = [
    PUBLIC_ID,
    Opt::value("private-id", "HEX", "The private id, 12 hex characters").required(),
    Opt::value(
        "aes-key",
        "HEX",
        "The AES key, 32 hex characters. Visible in `ps`: prefer `token import`",
    )
    .required(),
];

/// Hex as tools print it: any case, spaces allowed.
pub fn decode_hex<const N: usize>(what: &str, s: &str) -> Result<Zeroizing<[u8; N]>, EnrolError> {
    let clean: Zeroizing<String> = Zeroizing::new(
        s.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    );
    let bytes = Zeroizing::new(
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(clean.as_bytes())
            .map_err(|_| EnrolError::Invalid(format!("{what} is not hex (0-9, a-f)")))?,
    );
    if bytes.len() != N {
        return Err(EnrolError::Invalid(format!(
            "{what} must be {} hex characters ({N} bytes), not {}",
            2 * N,
            clean.len()
        )));
    }
    let mut out = Zeroizing::new([0u8; N]);
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// A public id as typed: 12 modhex characters, kept in lower case.
pub fn check_public_id(s: &str) -> Result<String, EnrolError> {
    let p = s.trim().to_ascii_lowercase();
    if !yubico::is_public_id(&p) {
        return Err(EnrolError::Invalid(format!(
            "public id `{}` must be 12 modhex characters (c b d e f g h i j k l n r t u v); \
             otpd validates 44-character OTPs",
            s.trim()
        )));
    }
    Ok(p)
}

/// The token that has this YubiKey already, if any: one key, one token.
pub fn public_id_owner(sv: &Services<'_>, public_id: &str) -> Result<Option<Token>, EnrolError> {
    let Some(admin) = sv.admin else {
        return Err(EnrolError::Refused(
            "a YubiKey is enrolled through the administration".into(),
        ));
    };
    Ok(admin
        .tokens(None)
        .map_err(|e| EnrolError::Refused(e.to_string()))?
        .into_iter()
        .find(|t| t.public_id.as_deref() == Some(public_id)))
}

/// [`public_id_owner`] as the refusal an admin reads.
pub fn refuse_enrolled_key(sv: &Services<'_>, public_id: &str) -> Result<(), EnrolError> {
    match public_id_owner(sv, public_id)? {
        Some(t) => Err(EnrolError::Refused(format!(
            "the YubiKey {public_id} is already token {} of `{}`; delete that first",
            t.serial, t.user
        ))),
        None => Ok(()),
    }
}

/// A Yubico OTP's shape: 44 modhex characters.
pub fn check_otp_shape(code: &str) -> Result<(), String> {
    if code.len() == yubico::OTP_LEN && yubico::modhex_decode(code).is_some() {
        Ok(())
    } else {
        Err(format!(
            "a code for this token is a {}-character Yubico OTP (touch the key)",
            yubico::OTP_LEN
        ))
    }
}

impl TokenClass for Yubikey {
    fn kind(&self) -> TokenKind {
        TokenKind::Yubikey
    }
    fn about(&self) -> &'static str {
        "YubiKey in Yubico OTP mode, validated here"
    }
    fn serial_prefix(&self) -> &'static str {
        "YK"
    }
    fn code_len(&self, _token: &Token) -> usize {
        yubico::OTP_LEN
    }
    fn check_shape(&self, _token: &Token, code: &str) -> Result<(), String> {
        check_otp_shape(code)
    }

    /// Decrypts and checks the OTP. Its (use, session) counter must be above the last
    /// accepted one: a captured OTP never works twice, and an older one (counter going
    /// backwards) never works at all.
    fn check(
        &self,
        _sv: &Services<'_>,
        token: &Token,
        secret: &[u8],
        code: &str,
        _now: i64,
    ) -> Result<Claim, Miss> {
        let Some(public_id) = token.public_id.as_deref() else {
            return Err(Some(format!("token {} has no public id", token.serial)));
        };
        let Some((private_id, key)) = yubico::unpack_secret(secret) else {
            return Err(Some(format!(
                "token {}: secret of the wrong length",
                token.serial
            )));
        };
        let d =
            yubico::decode(code, public_id, &private_id, &key).map_err(|e| Some(e.to_string()))?;
        let counter = d.packed();
        if counter <= token.last_counter {
            return Err(Some(format!(
                "YubiKey OTP already used or older than the last one accepted (use counter \
                 {}, session {})",
                d.use_counter, d.session_counter
            )));
        }
        Ok(Claim::Counter(Match { counter, drift: 0 }))
    }

    fn options(&self) -> Option<&'static [Opt]> {
        Some(&OPTIONS)
    }

    fn enrol(
        &self,
        sv: &Services<'_>,
        o: &Options,
        label: &str,
        _active: bool,
    ) -> Result<Enrolment, EnrolError> {
        let public_id = check_public_id(o.get("public-id").unwrap_or(""))?;
        let private_id = decode_hex::<6>("--private-id", o.get("private-id").unwrap_or(""))?;
        let key = decode_hex::<16>("--aes-key", o.get("aes-key").unwrap_or(""))?;
        refuse_enrolled_key(sv, &public_id)?;
        Ok(enrolment(&public_id, &private_id, &key, label))
    }

    fn describe(&self, token: &Token) -> Vec<(&'static str, String)> {
        let mut v = vec![(
            "public id",
            token.public_id.clone().unwrap_or_else(|| "-".into()),
        )];
        if token.last_counter >= 0 {
            v.push((
                "counter",
                format!(
                    "use {}, session {}",
                    token.last_counter >> 8,
                    token.last_counter & 0xff
                ),
            ));
        }
        v
    }
}

/// What a YubiKey token stores: also what `token import` of the personalization tool's log
/// stores per line.
pub fn enrolment(public_id: &str, private_id: &[u8; 6], key: &[u8; 16], label: &str) -> Enrolment {
    let label = if label.is_empty() {
        format!("YubiKey {public_id}")
    } else {
        label.to_string()
    };
    let mut e = Enrolment::plain(yubico::pack_secret(private_id, key), yubico::OTP_LEN, label);
    e.public_id = Some(public_id.to_string());
    e
}
