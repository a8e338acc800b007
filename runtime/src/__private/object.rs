//! The serde impls of generated structs and unions, written out: an object is read whole into
//! a map and its fields taken from it by name, and written field by field; a union's value is
//! read whole and offered to each variant in turn.
//!
//! Generated code writes these impls rather than deriving them because of what a derive costs
//! the crate's every build: serde's derived `Deserialize` is a visitor of about 3 KB of code per
//! field (a field enum, three matches on the field's name and index, a sequence visitor and a
//! map visitor), which was three quarters of what rustc expanded for GitHub's generated crate,
//! and `cargo check` time follows the expanded code. A field read through [`ObjectReader`] is
//! one call. The price is an intermediate map when reading, which an HTTP call dwarfs.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The properties of an object being read, taken out one by one as its fields are built.
/// Properties no field takes are ignored, as serde's derive ignores them.
pub struct ObjectReader<E> {
    properties: Map<String, Value>,
    error: PhantomData<E>,
}

impl<E: de::Error> ObjectReader<E> {
    /// Reads an object.
    pub fn new<'de, D>(deserializer: D) -> Result<Self, E>
    where
        D: Deserializer<'de, Error = E>,
    {
        Ok(Self {
            properties: Map::deserialize(deserializer)?,
            error: PhantomData,
        })
    }

    /// The field `name`: absent or `null` is `None` for an `Option`, and an error naming the
    /// field for any other type.
    pub fn field<T: DeserializeOwned>(&mut self, name: &'static str) -> Result<T, E> {
        match self.properties.remove(name) {
            Some(value) => T::deserialize(value).map_err(|e| in_field(name, &e)),
            None => T::deserialize(Absent(name)).map_err(E::custom),
        }
    }

    /// The field `name` of a property that may be absent (`None`), `null` (`Some(None)`) or a
    /// value.
    pub fn tri_state<T: DeserializeOwned>(
        &mut self,
        name: &'static str,
    ) -> Result<Option<Option<T>>, E> {
        match self.properties.remove(name) {
            Some(value) => Option::<T>::deserialize(value)
                .map(Some)
                .map_err(|e| in_field(name, &e)),
            None => Ok(None),
        }
    }

    /// The properties no field took.
    pub fn rest<T: DeserializeOwned>(self) -> Result<BTreeMap<String, T>, E> {
        self.properties
            .into_iter()
            .map(|(name, value)| match T::deserialize(value) {
                Ok(value) => Ok((name, value)),
                Err(e) => Err(E::custom(format_args!("field `{name}`: {e}"))),
            })
            .collect()
    }
}

fn in_field<E: de::Error>(name: &str, error: &serde_json::Error) -> E {
    E::custom(format_args!("field `{name}`: {error}"))
}

/// What an absent property reads as: nothing for an `Option`, an error for anything else.
struct Absent(&'static str);

impl<'de> Deserializer<'de> for Absent {
    type Error = de::value::Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::missing_field(self.0))
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_none()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// An object being written, field by field.
pub struct ObjectWriter<M> {
    map: M,
}

impl<M: SerializeMap> ObjectWriter<M> {
    /// Starts an object.
    pub fn new<S>(serializer: S) -> Result<Self, M::Error>
    where
        S: Serializer<SerializeMap = M, Error = M::Error>,
    {
        Ok(Self {
            map: serializer.serialize_map(None)?,
        })
    }

    /// Writes the field `name`.
    pub fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), M::Error> {
        self.map.serialize_entry(name, value)
    }

    /// Writes the field `name` unless it is `None`.
    pub fn optional<T: Serialize>(
        &mut self,
        name: &str,
        value: &Option<T>,
    ) -> Result<(), M::Error> {
        match value {
            Some(value) => self.map.serialize_entry(name, value),
            None => Ok(()),
        }
    }

    /// Writes each entry of `rest` as a field of its own.
    pub fn rest<T: Serialize>(&mut self, rest: &BTreeMap<String, T>) -> Result<(), M::Error> {
        rest.iter()
            .try_for_each(|(name, value)| self.map.serialize_entry(name, value))
    }

    /// Ends the object.
    pub fn end(self) -> Result<M::Ok, M::Error> {
        self.map.end()
    }
}

/// A value read whole, for the variants of an untagged union to try in turn.
pub struct Untagged<E> {
    value: Value,
    error: PhantomData<E>,
}

impl<E: de::Error> Untagged<E> {
    /// Reads a value.
    pub fn new<'de, D>(deserializer: D) -> Result<Self, E>
    where
        D: Deserializer<'de, Error = E>,
    {
        Ok(Self {
            value: Value::deserialize(deserializer)?,
            error: PhantomData,
        })
    }

    /// The value as a `T`, if it reads as one.
    pub fn read<T: DeserializeOwned>(&self) -> Option<T> {
        T::deserialize(&self.value).ok()
    }

    /// The error when no variant of the union `name` reads the value.
    pub fn unmatched(&self, name: &str) -> E {
        E::custom(format_args!(
            "the value matches no variant of `{name}`: {}",
            excerpt(&self.value)
        ))
    }
}

/// The start of a value's JSON, for an error message.
fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A struct as the generator writes it: a required field, an optional one, a tri-state
    /// one, a renamed one, and properties not listed.
    #[derive(Debug, PartialEq)]
    struct Pet {
        name: String,
        tag: Option<String>,
        weight: Option<Option<f64>>,
        owner_id: i64,
        extra: BTreeMap<String, Value>,
    }

    impl Serialize for Pet {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut object = ObjectWriter::new(serializer)?;
            object.field("name", &self.name)?;
            object.optional("tag", &self.tag)?;
            object.optional("weight", &self.weight)?;
            object.field("ownerId", &self.owner_id)?;
            object.rest(&self.extra)?;
            object.end()
        }
    }

    impl<'de> Deserialize<'de> for Pet {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let mut object = ObjectReader::new(deserializer)?;
            Ok(Self {
                name: object.field("name")?,
                tag: object.field("tag")?,
                weight: object.tri_state("weight")?,
                owner_id: object.field("ownerId")?,
                extra: object.rest()?,
            })
        }
    }

    fn pet(tag: Option<&str>, weight: Option<Option<f64>>) -> Pet {
        Pet {
            name: "Rex".into(),
            tag: tag.map(str::to_owned),
            weight,
            owner_id: 7,
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn fields_read_and_write_as_the_description_names_them() {
        for (json, value) in [
            (r#"{"name":"Rex","ownerId":7}"#, pet(None, None)),
            (
                r#"{"name":"Rex","tag":"dog","weight":null,"ownerId":7}"#,
                pet(Some("dog"), Some(None)),
            ),
            (
                r#"{"name":"Rex","weight":4.5,"ownerId":7}"#,
                pet(None, Some(Some(4.5))),
            ),
        ] {
            let read: Pet = serde_json::from_str(json).unwrap();
            assert_eq!(read, value, "{json}");
            assert_eq!(serde_json::to_string(&read).unwrap(), json);
            // Through a JSON value too, as task inputs and outputs travel.
            let through: Pet =
                serde_json::from_value(serde_json::to_value(&value).unwrap()).unwrap();
            assert_eq!(through, value);
        }
    }

    #[test]
    fn a_null_optional_field_reads_as_none() {
        let read: Pet = serde_json::from_str(r#"{"name":"Rex","tag":null,"ownerId":7}"#).unwrap();
        assert_eq!(read, pet(None, None));
    }

    #[test]
    fn properties_no_field_takes_are_kept_by_rest_and_written_back() {
        let json = r#"{"name":"Rex","ownerId":7,"color":"brown","legs":4}"#;
        let read: Pet = serde_json::from_str(json).unwrap();
        assert_eq!(read.extra.len(), 2);
        assert_eq!(read.extra["color"], "brown");
        let written: Value = serde_json::to_value(&read).unwrap();
        assert_eq!(written, serde_json::from_str::<Value>(json).unwrap());
    }

    /// An untagged union as the generator writes it.
    #[derive(Debug, PartialEq)]
    enum NumberOrPet {
        Number(f64),
        Pet(Pet),
    }

    impl<'de> Deserialize<'de> for NumberOrPet {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let value = Untagged::new(deserializer)?;
            if let Some(variant) = value.read() {
                return Ok(Self::Number(variant));
            }
            if let Some(variant) = value.read() {
                return Ok(Self::Pet(variant));
            }
            Err(value.unmatched("NumberOrPet"))
        }
    }

    #[test]
    fn an_untagged_union_reads_the_first_variant_that_fits() {
        assert_eq!(
            serde_json::from_str::<NumberOrPet>("3").unwrap(),
            NumberOrPet::Number(3.0)
        );
        assert_eq!(
            serde_json::from_str::<NumberOrPet>(r#"{"name":"Rex","ownerId":7}"#).unwrap(),
            NumberOrPet::Pet(pet(None, None))
        );
        let error = serde_json::from_str::<NumberOrPet>(r#""three""#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(r#"the value matches no variant of `NumberOrPet`: "three""#),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let missing = serde_json::from_str::<Pet>(r#"{"ownerId":7}"#).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `name`"),
            "{missing}"
        );
        let wrong = serde_json::from_str::<Pet>(r#"{"name":"Rex","ownerId":"seven"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains("field `ownerId`: invalid type: string \"seven\", expected i64"),
            "{wrong}"
        );
        let not_an_object = serde_json::from_str::<Pet>("[1]").unwrap_err().to_string();
        assert!(not_an_object.contains("expected a map"), "{not_an_object}");
    }
}
