//! The intermediate representation: the one model every spec reader produces and every template
//! reads.
//!
//! Every name in it is final: Rust names are sanitised, keywords escaped and collisions resolved
//! (see [`names`]), and every item keeps the wire name the spec gave it. Items are in spec order,
//! so rendering the same IR always gives the same bytes.

mod merge;
pub mod names;
mod recursion;
pub mod select;

pub use merge::merge_identical_types;
pub use recursion::box_recursive_fields;

/// A whole API: what one generated crate serves.
#[derive(Debug, Clone)]
pub struct Api {
    /// The Rust package name of the generated crate (kebab-case).
    pub crate_name: String,
    /// The service name tasks are routed by (snake_case).
    pub service: String,
    /// `info.title`.
    pub title: String,
    /// `info.version`.
    pub version: String,
    /// `info.description`.
    pub description: Option<String>,
    /// The first server URL of the spec, if any.
    pub default_base_url: Option<String>,
    /// Every named type, indexed by [`TypeId`].
    pub types: Vec<TypeDef>,
    /// Every operation, in spec order.
    pub operations: Vec<Operation>,
    /// What the reader left out or changed, for the user to know (printed by the CLI).
    pub notes: Vec<String>,
    /// The parts of the description that could not be read and were skipped, one line each
    /// naming the JSON pointer and the reason (printed by the CLI as warnings).
    pub warnings: Vec<String>,
    /// The encoded `FileDescriptorSet` that gRPC calls read messages by, when the API has
    /// gRPC operations.
    pub grpc_descriptor: Option<Vec<u8>>,
    /// The security schemes of `components.securitySchemes`, in spec order.
    pub security_schemes: Vec<SecurityScheme>,
}

impl Api {
    /// The definition a use of type `id` stands for: the type itself, or, for an alias of
    /// another named type, the one at the end of the chain.
    pub fn definition(&self, mut id: TypeId) -> &TypeDef {
        // A chain longer than the number of types has come back on itself.
        for _ in 0..self.types.len() {
            match &self.types[id.0].kind {
                TypeKind::Alias(TypeRef::Named(next)) => id = *next,
                _ => break,
            }
        }
        &self.types[id.0]
    }

    /// An API named `t` with these types and nothing else, for tests of passes over types.
    #[cfg(test)]
    pub(crate) fn of_types(types: Vec<TypeDef>) -> Self {
        Self {
            crate_name: "t".to_owned(),
            service: "t".to_owned(),
            title: "t".to_owned(),
            version: "1".to_owned(),
            description: None,
            default_base_url: None,
            types,
            operations: Vec::new(),
            notes: Vec::new(),
            warnings: Vec::new(),
            grpc_descriptor: None,
            security_schemes: Vec::new(),
        }
    }
}

/// A security scheme: how credentials are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityScheme {
    /// The scheme's name in the description; credentials are configured under it.
    pub name: String,
    /// What is sent.
    pub kind: SchemeKind,
    /// The description.
    pub doc: Option<String>,
}

/// The kinds of credentials the runtime sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemeKind {
    /// An API key in the header, query parameter or cookie `name`.
    ApiKey {
        /// Where it goes.
        location: ParamLocation,
        /// The header, parameter or cookie name.
        name: String,
    },
    /// HTTP basic.
    Basic,
    /// A bearer token the user provides: HTTP bearer (and other HTTP schemes), OpenID Connect,
    /// OAuth 2 flows other than client credentials.
    Bearer,
    /// OAuth 2 client credentials: the runtime fetches the token from `token_url`.
    OAuth2ClientCredentials {
        /// The token endpoint.
        token_url: String,
    },
}

/// Index of a type in [`Api::types`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TypeId(pub usize);

/// A named type of the `types` module.
#[derive(Debug, Clone)]
pub struct TypeDef {
    /// The Rust name (PascalCase, unique among types).
    pub name: String,
    /// Where the type came from: a schema name or a JSON pointer into the spec.
    pub origin: String,
    /// The description of the schema.
    pub doc: Option<String>,
    /// What the type is.
    pub kind: TypeKind,
    /// Whether [`merge_identical_types`] made this type an alias of one of the same
    /// shape (its documentation then says so).
    pub merged: bool,
}

/// The shape of a named type.
#[derive(Debug, Clone)]
pub enum TypeKind {
    /// An object with known properties, and possibly more of one type.
    Struct {
        /// The properties, in spec order.
        fields: Vec<Field>,
        /// The type of properties not listed (`additionalProperties`), kept in a flattened map.
        additional: Option<TypeRef>,
    },
    /// A string with a known set of values. The set stays open: a value the spec does not
    /// list is kept in the variant named `other`, so a new value on the server does not fail a
    /// whole response.
    Enum {
        /// The values, in spec order.
        variants: Vec<EnumVariant>,
        /// The name of the variant that holds any other string (unique in the enum).
        other: String,
    },
    /// A value of one of several shapes (`oneOf`, `anyOf`).
    Union {
        /// The shapes: in the order they are tried, most specific first, when there is no
        /// discriminator; in spec order when there is one.
        variants: Vec<UnionVariant>,
        /// The property whose value says which variant an object is, and the name of the
        /// variant that keeps objects with a value no variant has.
        discriminator: Option<Discriminator>,
    },
    /// Another name for a type (`type Name = ...`).
    Alias(TypeRef),
    /// A wrapper struct around one type, serialized as that type. Used instead of an alias where
    /// an alias would refer to itself (`type Tree = Vec<Tree>` is not valid Rust).
    Newtype(TypeRef),
}

/// A property of a struct.
#[derive(Debug, Clone)]
pub struct Field {
    /// The Rust name (snake_case, unique in its struct).
    pub name: String,
    /// The JSON property name.
    pub wire_name: String,
    /// The type, `Option` excluded.
    pub ty: TypeRef,
    /// Whether the property must be present.
    pub required: bool,
    /// Whether the value may be `null`.
    pub nullable: bool,
    /// The description.
    pub doc: Option<String>,
}

impl Field {
    /// Whether the Rust field is an `Option`.
    pub fn optional(&self) -> bool {
        !self.required || self.nullable
    }

    /// Whether absent, `null` and a value are three different things: an optional field that
    /// may be null, an `Option<Option<T>>`.
    pub fn tri_state(&self) -> bool {
        !self.required && self.nullable
    }
}

/// A value of a string enum.
#[derive(Debug, Clone)]
pub struct EnumVariant {
    /// The Rust name (PascalCase, unique in its enum).
    pub name: String,
    /// The string on the wire.
    pub wire_name: String,
}

/// One shape of a union.
#[derive(Debug, Clone)]
pub struct UnionVariant {
    /// The Rust name (PascalCase, unique in its union).
    pub name: String,
    /// The type the variant holds.
    pub ty: TypeRef,
    /// The discriminator values that select this variant (empty without a discriminator).
    pub tags: Vec<String>,
}

/// How a union tells its variants apart by a property (`discriminator`).
#[derive(Debug, Clone)]
pub struct Discriminator {
    /// The JSON property name.
    pub property: String,
    /// The name of the variant that keeps an object whose value no variant has, as JSON.
    pub other: String,
}

/// A use of a type: in a field, a parameter, a body, a variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRef {
    /// A type of [`Api::types`].
    Named(TypeId),
    /// A built-in type.
    Primitive(Primitive),
    /// A JSON array.
    Vec(Box<TypeRef>),
    /// A JSON array of a fixed length whose items have their own types (`prefixItems`): a
    /// Rust tuple, which serde writes and reads as an array.
    Tuple(Vec<TypeRef>),
    /// A JSON object with arbitrary keys.
    Map(Box<TypeRef>),
    /// An indirection that breaks a recursive type.
    Box(Box<TypeRef>),
    /// Any JSON value.
    Any,
}

/// The built-in types a schema can map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primitive {
    /// `string`
    String,
    /// `boolean`
    Bool,
    /// `integer` with format `int8`
    I8,
    /// `integer` with format `int16`
    I16,
    /// `integer` with format `int32`
    I32,
    /// `integer` with format `int64`, or an unknown one, or none
    I64,
    /// `integer` with format `uint8`
    U8,
    /// `integer` with format `uint16`
    U16,
    /// `integer` with format `uint32`
    U32,
    /// `integer` with format `uint64`
    U64,
    /// A protobuf 64-bit signed integer: a string in JSON
    Int64Text,
    /// A protobuf 64-bit unsigned integer: a string in JSON
    Uint64Text,
    /// `number` with format `float`
    F32,
    /// `number` with format `double` or none
    F64,
    /// `string` with format `date-time`
    DateTime,
    /// `string` with format `date`
    Date,
    /// `string` with format `uuid`
    Uuid,
    /// `string` with format `binary`, as a whole body
    Bytes,
    /// `string` with format `byte`: bytes sent as base64 text
    Base64,
    /// `string` with format `binary`, as a property of a multipart body: bytes and a file name
    File,
}

/// One HTTP operation: one task type and one client method.
#[derive(Debug, Clone)]
pub struct Operation {
    /// The struct name of the request (PascalCase, unique among operations).
    pub type_name: String,
    /// The client method name (snake_case).
    pub method_name: String,
    /// The task name recorded in histories: the operationId, or one made from method and path.
    pub wire_name: String,
    /// The groups the description puts it in: its OpenAPI `tags`, or its protobuf service's
    /// full name; what `--tag` selects by.
    pub tags: Vec<String>,
    /// The HTTP method in upper case.
    pub http_method: String,
    /// The path template, split into literal text and parameters.
    pub path: Vec<PathPart>,
    /// The path template as the spec wrote it.
    pub path_template: String,
    /// The parameters, in spec order (path-level ones first).
    pub params: Vec<Param>,
    /// The request body.
    pub body: Option<Body>,
    /// What a successful response gives.
    pub output: Output,
    /// Summary and description.
    pub doc: Option<String>,
    /// Whether the operation is marked deprecated.
    pub deprecated: bool,
    /// Whether repeating the call is harmless by HTTP semantics (GET, HEAD, PUT, DELETE, OPTIONS).
    pub idempotent: bool,
    /// The header parameter the description names for idempotency keys (`Idempotency-Key`...):
    /// the runtime fills it with the task id, so it is not a field of the request.
    pub idempotency_header: Option<String>,
    /// The security requirements: alternatives, each the names of the schemes sent together.
    /// Empty when the operation needs no credentials.
    pub security: Vec<Vec<String>>,
    /// Set for a gRPC method: the call is made over gRPC, with the body as the message (or, for
    /// a client-streaming method, the list of messages).
    pub grpc: Option<GrpcMethod>,
}

/// A gRPC method.
#[derive(Debug, Clone)]
pub struct GrpcMethod {
    /// `/<package>.<Service>/<Method>`.
    pub path: String,
    /// The full name of the request message.
    pub input: String,
    /// The full name of the response message.
    pub output: String,
    /// Which side sends a stream.
    pub kind: GrpcKind,
}

/// Which side of a gRPC method sends a stream (bidirectional methods are not operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcKind {
    /// One request, one response.
    Unary,
    /// One request; the output is the list of the response messages.
    ServerStreaming,
    /// The body is the list of request messages, sent as the stream; one response.
    ClientStreaming,
}

/// A piece of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPart {
    /// Text sent as is.
    Literal(String),
    /// The value of the parameter at this index of [`Operation::params`], percent-encoded.
    Param(usize),
    /// The value of the parameter at this index, percent-encoded but for `/`: a variable that
    /// spans path segments (`{name=shelves/*}`).
    Segments(usize),
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamLocation {
    /// In the path.
    Path,
    /// In the query string.
    Query,
    /// In a header.
    Header,
    /// In the `Cookie` header.
    Cookie,
}

/// A path, query, header or cookie parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// The Rust field name (snake_case, unique in its request struct).
    pub name: String,
    /// The name on the wire.
    pub wire_name: String,
    /// Where it goes.
    pub location: ParamLocation,
    /// The type, `Option` excluded.
    pub ty: TypeRef,
    /// Whether it must be given.
    pub required: bool,
    /// How the value is written (`style`).
    pub style: ParamStyle,
    /// Whether arrays and objects are exploded into several values (`explode`).
    pub explode: bool,
    /// Whether the value is sent as JSON text (a parameter with `content: application/json`).
    pub json: bool,
    /// The description.
    pub doc: Option<String>,
}

/// OpenAPI's parameter styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamStyle {
    /// `form` (query and cookie default).
    Form,
    /// `simple` (path and header default).
    Simple,
    /// `label`: `.a.b`.
    Label,
    /// `matrix`: `;name=a`.
    Matrix,
    /// `spaceDelimited`.
    SpaceDelimited,
    /// `pipeDelimited`.
    PipeDelimited,
    /// `deepObject`: `name[key]=value`.
    DeepObject,
}

impl ParamStyle {
    /// The style and explode a parameter has when the description gives none.
    pub fn default_for(location: ParamLocation) -> (Self, bool) {
        match location {
            ParamLocation::Query | ParamLocation::Cookie => (Self::Form, true),
            ParamLocation::Path | ParamLocation::Header => (Self::Simple, false),
        }
    }
}

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// JSON, for `application/json` and every `+json` type.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `multipart/form-data` (and other `multipart/*` types).
    Multipart,
    /// Text sent as is.
    Text,
    /// Bytes sent as is.
    Bytes,
}

/// A request body.
#[derive(Debug, Clone)]
pub struct Body {
    /// The Rust field name in the request struct.
    pub name: String,
    /// The media type sent in `Content-Type`.
    pub media_type: String,
    /// The encoding.
    pub encoding: BodyEncoding,
    /// The type of the value.
    pub ty: TypeRef,
    /// Whether the body must be sent.
    pub required: bool,
    /// Other media types the operation offers for the same schema, which the client may prefer
    /// to the default (JSON, form or multipart encodings only).
    pub alternatives: Vec<(String, BodyEncoding)>,
    /// Form bodies: the properties whose `encoding` gives a style, with it and explode.
    pub form_styles: Vec<(String, ParamStyle, bool)>,
    /// Multipart bodies of a struct: its binary properties (wire names, sent as files) with
    /// their part's media type. Other properties are sent as text or JSON parts.
    pub files: Vec<(String, String)>,
    /// Media types offered that are not generated (their schema differs from the default's).
    pub skipped: Vec<String>,
    /// The description.
    pub doc: Option<String>,
}

/// The result of a successful call.
#[derive(Debug, Clone)]
pub struct Output {
    /// How the response body is decoded; `None` when there is no body to read.
    pub encoding: Option<BodyEncoding>,
    /// The type of the value; unused when `encoding` is `None`.
    pub ty: TypeRef,
    /// When success statuses give different types: an enum with a variant per status, which
    /// replaces `encoding` and `ty`.
    pub by_status: Option<StatusOutputs>,
    /// The error responses the description gives a JSON body type for, in spec order.
    pub errors: Vec<(String, TypeRef)>,
    /// The media types sent in `Accept`: those of the described responses that the decoders
    /// read (the success responses' types of their encoding, the JSON types of error
    /// responses), in spec order. Empty when no response has a body.
    pub accept: Vec<String>,
}

/// An output enum: one variant per success status.
#[derive(Debug, Clone)]
pub struct StatusOutputs {
    /// The enum's name (PascalCase, unique among the operations module's types).
    pub type_name: String,
    /// The variants, in status order.
    pub variants: Vec<StatusVariant>,
}

/// The variant of one success status.
#[derive(Debug, Clone)]
pub struct StatusVariant {
    /// The Rust name (`Ok`, `Created`, `NoContent`, `Status299`...).
    pub name: String,
    /// The status it stands for.
    pub status: StatusMatch,
    /// How its body is decoded; `None` for no body.
    pub encoding: Option<BodyEncoding>,
    /// The type of the body.
    pub ty: TypeRef,
    /// The response's description.
    pub doc: Option<String>,
}

/// Which statuses a response of the description stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// One status.
    Code(u16),
    /// `2XX`: any status of the class.
    Range(u16),
    /// `default`: any status not listed.
    Default,
}
