//! Property tests of the types generated from `fixtures/schemas.yaml` (committed as
//! `generated-example/schemas`) and `fixtures/openapi31.yaml` (`generated-example/openapi31`):
//! for each schema construct, JSON the schema allows is read into the right Rust value and
//! written back unchanged.

use openapi31::types::{Owner, Reading, Readings};
use proptest::prelude::*;
use schemas::types::{
    Closed, Document, DocumentState, Garage, Identifier, Open, Patch, Pet, Scalar, Settings, Shape,
    Sizes, Vehicle,
};
use serde_json::{Map, Value, json};

/// Reads `value` as `T` and writes it back, which must give `value` again.
fn round_trip<T>(value: &Value) -> Result<T, TestCaseError>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = serde_json::from_value(value.clone())
        .map_err(|err| TestCaseError::fail(format!("{value} does not read: {err}")))?;
    let back = serde_json::to_value(&typed).unwrap();
    prop_assert_eq!(&back, value);
    Ok(typed)
}

/// A JSON object of the pairs that are present.
fn object(pairs: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect(),
    )
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _\\-é✓]{0,12}"
}

fn date_time() -> impl Strategy<Value = String> {
    (
        2000i32..2100,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        0u32..60,
    )
        .prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"))
}

fn base64_text() -> impl Strategy<Value = (Vec<u8>, String)> {
    proptest::collection::vec(any::<u8>(), 0..24).prop_map(|bytes| {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        (bytes, text)
    })
}

fn document() -> impl Strategy<Value = Value> {
    let required = (
        any::<u128>(),
        text(),
        date_time(),
        any::<i64>(),
        proptest::collection::vec(text(), 0..3),
    );
    let optional = (
        proptest::option::of(proptest::option::of(text())),
        proptest::option::of(any::<i32>()),
        proptest::option::of(-1e9f64..1e9),
        proptest::option::of(any::<bool>()),
        proptest::option::of(proptest::collection::btree_map(text(), text(), 0..3)),
        proptest::option::of(base64_text()),
        proptest::option::of(prop_oneof![
            Just("draft".to_owned()),
            Just("in-review".to_owned()),
            Just("2nd-pass".to_owned()),
            text()
        ]),
    );
    (required, optional).prop_map(
        |(
            (id, title, created, size, tags),
            (summary, pages, score, draft, metadata, checksum, state),
        )| {
            object(vec![
                ("id", Some(json!(uuid::Uuid::from_u128(id).to_string()))),
                ("title", Some(json!(title))),
                // absent, null, or a value
                ("summary", summary.map(|s| json!(s))),
                ("created", Some(json!(created))),
                ("size", Some(json!(size))),
                ("pages", pages.map(|p| json!(p))),
                ("score", score.map(|s| json!(s))),
                ("draft", draft.map(|d| json!(d))),
                ("tags", Some(json!(tags))),
                ("metadata", metadata.map(|m| json!(m))),
                ("checksum", checksum.map(|(_, text)| json!(text))),
                ("state", state.map(|s| json!(s))),
            ])
        },
    )
}

proptest! {
    #[test]
    fn documents_keep_every_field_absent_null_or_set(value in document()) {
        let doc: Document = round_trip(&value)?;
        match value.get("summary") {
            None => prop_assert_eq!(doc.summary, None),
            Some(Value::Null) => prop_assert_eq!(doc.summary, Some(None)),
            Some(v) => prop_assert_eq!(doc.summary, Some(Some(v.as_str().unwrap().to_owned()))),
        }
    }

    #[test]
    fn enums_keep_values_the_spec_does_not_list(state in prop_oneof![Just("published".to_owned()), text()]) {
        let read: DocumentState = round_trip(&json!(state))?;
        match state.as_str() {
            "published" => prop_assert_eq!(read, DocumentState::Published),
            "draft" => prop_assert_eq!(read, DocumentState::Draft),
            "in-review" => prop_assert_eq!(read, DocumentState::InReview),
            "2nd-pass" => prop_assert_eq!(read, DocumentState::V2ndPass),
            other => prop_assert_eq!(read, DocumentState::Other(other.to_owned())),
        }
    }

    #[test]
    fn a_discriminator_picks_the_variant_and_keeps_the_tag(
        kind in prop_oneof![Just("cat"), Just("kitten"), Just("dog"), Just("Lizard"), Just("parrot")],
        lives in any::<i8>(),
        good in any::<bool>(),
        length in -1e6f64..1e6,
    ) {
        let value = match kind {
            "cat" | "kitten" => json!({ "kind": kind, "lives": lives }),
            "dog" => json!({ "kind": kind, "good": good }),
            _ => json!({ "kind": kind, "length": length }),
        };
        let pet: Pet = round_trip(&value)?;
        match (kind, pet) {
            ("cat" | "kitten", Pet::Cat(cat)) => {
                prop_assert_eq!(cat.kind, kind);
                prop_assert_eq!(cat.lives, lives);
            }
            ("dog", Pet::Dog(dog)) => prop_assert_eq!(dog.good, Some(good)),
            ("Lizard", Pet::Lizard(lizard)) => prop_assert_eq!(lizard.length, Some(length)),
            ("parrot", Pet::Other(other)) => prop_assert_eq!(other, value),
            (kind, pet) => prop_assert!(false, "{kind} was read as {pet:?}"),
        }
    }

    #[test]
    fn patches_tell_absent_from_null(
        version in any::<u32>(),
        note in proptest::option::of(proptest::option::of(text())),
        expires in proptest::option::of(proptest::option::of(date_time())),
    ) {
        let value = object(vec![
            ("version", Some(json!(version))),
            ("note", note.clone().map(|n| json!(n))),
            ("expires", expires.map(|e| json!(e))),
        ]);
        let patch: Patch = round_trip(&value)?;
        prop_assert_eq!(patch.note, note);
        prop_assert_eq!(patch.owner, None);
    }

    #[test]
    fn every_integer_format_takes_its_whole_range(
        i8v in any::<i8>(), i16v in any::<i16>(), i32v in any::<i32>(), i64v in any::<i64>(),
        u8v in any::<u8>(), u16v in any::<u16>(), u32v in any::<u32>(), u64v in any::<u64>(),
        f64v in -1e300f64..1e300,
    ) {
        let value = json!({
            "i8": i8v, "i16": i16v, "i32": i32v, "i64": i64v,
            "u8": u8v, "u16": u16v, "u32": u32v, "u64": u64v,
            "f64": f64v, "decimal": f64v,
        });
        let sizes: Sizes = round_trip(&value)?;
        prop_assert_eq!(sizes.u64, Some(u64v));
        prop_assert_eq!(sizes.i8, Some(i8v));
    }

    #[test]
    fn integers_out_of_their_format_are_refused(v in 128i64..100_000) {
        let too_big = serde_json::from_value::<Sizes>(json!({ "i8": v }));
        prop_assert!(too_big.is_err(), "i8 took {}", v);
        let negative = serde_json::from_value::<Sizes>(json!({ "u8": -v }));
        prop_assert!(negative.is_err(), "u8 took {}", -v);
    }

    #[test]
    fn base64_fields_hold_the_decoded_bytes((bytes, text) in base64_text()) {
        let doc = json!({
            "id": uuid::Uuid::nil().to_string(), "title": "", "created": "2024-01-01T00:00:00Z",
            "size": 1, "tags": [], "checksum": text,
        });
        let read: Document = round_trip(&doc)?;
        prop_assert_eq!(read.checksum.map(|c| c.0), Some(bytes));
    }

    #[test]
    fn untagged_unions_pick_the_narrowest_variant(
        choice in 0..5u8, b in any::<bool>(), i in any::<i64>(), f in -1e6f64..1e6, s in text(), t in date_time(),
    ) {
        let value = match choice {
            0 => json!(b),
            1 => json!(i),
            2 => json!(f + 0.5),
            3 => json!(s),
            _ => json!(t),
        };
        let scalar: Scalar = round_trip(&value)?;
        let right = match (choice, &scalar) {
            (0, Scalar::Bool(_)) | (1, Scalar::I64(_)) | (2, Scalar::F64(_)) => true,
            (3, Scalar::String(_)) => true,
            // A string that happens to be a date-time reads as one.
            (4, Scalar::DateTime(_)) => true,
            _ => false,
        };
        prop_assert!(right, "{} was read as {:?}", value, scalar);
    }

    #[test]
    fn one_of_objects_take_the_variant_whose_required_fields_are_there(
        radius in -1e6f64..1e6, side in -1e6f64..1e6, circle in any::<bool>(),
    ) {
        let value = if circle { json!({ "radius": radius }) } else { json!({ "side": side }) };
        let shape: Shape = round_trip(&value)?;
        prop_assert_eq!(matches!(shape, Shape::Circle(_)), circle);
    }

    #[test]
    fn identifiers_read_integers_and_strings(i in any::<i64>(), s in "[a-z]{1,8}") {
        prop_assert_eq!(round_trip::<Identifier>(&json!(i))?, Identifier::I64(i));
        prop_assert_eq!(round_trip::<Identifier>(&json!(s))?, Identifier::String(s));
    }

    #[test]
    fn additional_properties_are_kept_when_allowed(
        extra in proptest::collection::btree_map("[a-z]{1,6}", any::<bool>(), 0..4),
        theme in proptest::option::of(text()),
    ) {
        let mut map: Map<String, Value> =
            extra.iter().filter(|(k, _)| *k != "theme").map(|(k, v)| (k.clone(), json!(v))).collect();
        if let Some(theme) = &theme {
            map.insert("theme".into(), json!(theme));
        }
        let value = Value::Object(map.clone());
        let settings: Settings = round_trip(&value)?;
        prop_assert_eq!(settings.additional_properties.len(), map.len() - usize::from(theme.is_some()));

        let open: Open = round_trip(&json!({ "known": "k", "anything": [1, "two"] }))?;
        prop_assert_eq!(open.additional_properties.get("anything"), Some(&json!([1, "two"])));

        // `additionalProperties: false`: other properties are not kept (nor refused: a server
        // that adds one must not break its clients).
        let closed: Closed = serde_json::from_value(json!({ "only": "o", "more": 1 })).unwrap();
        prop_assert_eq!(serde_json::to_value(closed).unwrap(), json!({ "only": "o" }));
    }
}

proptest! {
    /// `prefixItems` of a fixed length (`fixtures/openapi31.yaml`, committed as
    /// `generated-example/openapi31`) are Rust tuples, written and read as JSON arrays.
    #[test]
    fn fixed_length_prefix_items_are_tuples(
        name in proptest::option::of(text()),
        value in -1e9f64..1e9,
        unit in text(),
        single in any::<i64>(),
    ) {
        let owner = object(vec![("name", name.clone().map(|n| json!(n)))]);
        let reading = json!([owner, value, unit]);
        let read: Reading = round_trip(&reading)?;
        prop_assert_eq!(&read, &(Owner { name }, value, unit.clone()));

        let readings = json!({ "readings": [reading, reading], "single": [single] });
        let read: Readings = round_trip(&readings)?;
        prop_assert_eq!(read.single, Some((single,)));

        // Another length is not the tuple.
        let short = serde_json::from_value::<Reading>(json!([{}, value]));
        prop_assert!(short.is_err(), "two items read as a Reading");
        let long = serde_json::from_value::<Reading>(json!([{}, value, unit, 1]));
        prop_assert!(long.is_err(), "four items read as a Reading");
    }
}

proptest! {
    /// A base schema with a discriminator that other schemas extend with `allOf`: an enum of
    /// them, picked by the tag, each variant with the base's properties.
    #[test]
    fn a_base_with_a_discriminator_is_an_enum_of_its_subtypes(
        tag in prop_oneof![Just("car"), Just("Bike"), Just("ElectricBike"), Just("Car"), Just("truck")],
        wheels in any::<i32>(),
        seats in any::<i32>(),
        battery in proptest::option::of(any::<i32>()),
    ) {
        let value = match tag {
            "car" => json!({ "vehicleType": tag, "wheels": wheels, "seats": seats }),
            "ElectricBike" => object(vec![
                ("vehicleType", Some(json!(tag))),
                ("wheels", Some(json!(wheels))),
                ("batteryWh", battery.map(|b| json!(b))),
            ]),
            _ => json!({ "vehicleType": tag, "wheels": wheels }),
        };
        let garage: Garage = round_trip(&json!({ "vehicles": [value] }))?;
        let vehicle = garage.vehicles.into_iter().next().unwrap();
        match (tag, vehicle) {
            ("car", Vehicle::Car(car)) => {
                prop_assert_eq!(car.vehicle_type, "car");
                prop_assert_eq!((car.wheels, car.seats), (wheels, seats));
            }
            ("Bike", Vehicle::Bike(bike)) => prop_assert_eq!(bike.wheels, wheels),
            ("ElectricBike", Vehicle::ElectricBike(bike)) => {
                prop_assert_eq!((bike.wheels, bike.battery_wh), (wheels, battery));
            }
            // The mapping names `car`, not the schema name; `truck` is no subtype.
            ("Car" | "truck", Vehicle::Other(other)) => prop_assert_eq!(other, value),
            (tag, vehicle) => prop_assert!(false, "{} was read as {:?}", tag, vehicle),
        }
    }
}
