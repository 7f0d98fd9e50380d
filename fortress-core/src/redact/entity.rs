//! The built-in entity types, as they appear in reports, masks (`[EMAIL]`) and
//! configuration. Workspace patterns and key rules may name their own.

/// Email addresses.
pub const EMAIL: &str = "EMAIL";
/// Phone numbers (NANP and E.164).
pub const PHONE: &str = "PHONE";
/// US Social Security numbers.
pub const SSN: &str = "SSN";
/// Payment card numbers.
pub const CARD: &str = "CARD";
/// International bank account numbers.
pub const IBAN: &str = "IBAN";
/// IPv4 and IPv6 addresses.
pub const IP: &str = "IP";
/// Dates of birth.
pub const DOB: &str = "DOB";
/// Medical record numbers.
pub const MRN: &str = "MRN";
/// Secrets and credentials (API keys, tokens, private keys, passwords).
pub const SECRET: &str = "SECRET";
/// Personal names.
pub const NAME: &str = "NAME";

/// Every built-in entity type.
pub const ALL: &[&str] = &[EMAIL, PHONE, SSN, CARD, IBAN, IP, DOB, MRN, SECRET, NAME];

/// Whether `name` is a valid entity name: `A-Z`, `0-9` and `_`, starting with a letter.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_uppercase())
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && name.len() <= 32
}
