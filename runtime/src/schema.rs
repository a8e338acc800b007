//! Serde helpers that generated types use for what JSON Schema says and serde does not.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes sent as base64 text (`format: byte`).
///
/// Standard base64 with padding is written; standard and URL-safe alphabets, with or without
/// padding, are read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Base64(pub Vec<u8>);

impl From<Vec<u8>> for Base64 {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl AsRef<[u8]> for Base64 {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let trimmed = text.trim_end_matches('=');
        let url_safe = trimmed.contains(['-', '_']);
        let decoded = if url_safe {
            URL_SAFE_NO_PAD.decode(trimmed)
        } else {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed)
        };
        decoded
            .map(Self)
            .map_err(|err| D::Error::custom(format!("invalid base64: {err}")))
    }
}

/// A protobuf 64-bit integer, a string in JSON (`"-12"`) as the proto3 JSON mapping writes it;
/// a JSON number is read too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Int64(pub i64);

/// A protobuf 64-bit unsigned integer, a string in JSON; a JSON number is read too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UInt64(pub u64);

macro_rules! integer_text {
    ($name:ident, $int:ty) => {
        impl From<$int> for $name {
            fn from(value: $int) -> Self {
                Self(value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Either {
                    Number($int),
                    Text(String),
                }
                match Either::deserialize(deserializer)? {
                    Either::Number(n) => Ok(Self(n)),
                    Either::Text(text) => text.trim().parse().map(Self).map_err(|err| {
                        D::Error::custom(format!("`{text}` is not a {}: {err}", stringify!($int)))
                    }),
                }
            }
        }
    };
}

integer_text!(Int64, i64);
integer_text!(UInt64, u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_reads_every_alphabet_and_writes_the_standard_one() {
        let bytes = Base64(vec![0xfb, 0xff, 0x01]);
        assert_eq!(serde_json::to_string(&bytes).unwrap(), "\"+/8B\"");
        for text in ["\"+/8B\"", "\"-_8B\""] {
            assert_eq!(serde_json::from_str::<Base64>(text).unwrap(), bytes);
        }
        assert_eq!(
            serde_json::from_str::<Base64>("\"AQ==\"").unwrap(),
            Base64(vec![1])
        );
        let err = serde_json::from_str::<Base64>("\"%%\"").unwrap_err();
        assert!(err.to_string().contains("invalid base64"), "{err}");
    }

    #[test]
    fn sixty_four_bit_integers_are_strings_and_read_numbers_too() {
        assert_eq!(serde_json::to_string(&Int64(-12)).unwrap(), "\"-12\"");
        assert_eq!(
            serde_json::from_str::<Int64>("\"-12\"").unwrap(),
            Int64(-12)
        );
        assert_eq!(serde_json::from_str::<Int64>("7").unwrap(), Int64(7));
        assert_eq!(
            serde_json::from_str::<UInt64>("\"18446744073709551615\"").unwrap(),
            UInt64(u64::MAX)
        );
        let err = serde_json::from_str::<UInt64>("\"-1\"").unwrap_err();
        assert!(err.to_string().contains("is not a u64"), "{err}");
    }
}
