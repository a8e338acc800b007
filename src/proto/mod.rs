//! Protobuf services into the IR.
//!
//! Files are compiled by protox (no `protoc` needed): the well-known types as protox ships them,
//! then the include folders the user gives, then the `google/api` annotation files shipped here
//! (`google/`), so service files that use `google.api.http` compile without a copy of
//! googleapis. prost-reflect reads the
//! descriptors and their options.
//!
//! Messages become structs in the canonical proto3 JSON mapping (lowerCamelCase names, 64-bit
//! integers as strings, enums by name, the well-known types as their JSON forms); every field
//! is optional, as proto3 leaves out default values. A method with a `google.api.http` rule
//! becomes an HTTP/JSON operation; a method without one a gRPC call: unary, server streaming
//! (the output is the list of the messages) or client streaming (the input is the list). A
//! bidirectional method is skipped with a note: a durable task has one input and one output.

mod editions;
mod http_rule;
mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use prost::Message as _;
use prost_reflect::{DescriptorPool, FileDescriptor, MethodDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use crate::Result;
use crate::error::{Error, excerpt_quoted};
use crate::ir::names::{RESERVED_TYPES, Scope, snake_ident};
use crate::ir::{Api, box_recursive_fields};
use crate::spec::ReadOptions;

/// The `google/api` files shipped with the generator, by import name.
const BUNDLED: &[(&str, &str)] = &[
    (
        "google/api/annotations.proto",
        include_str!("google/api/annotations.proto"),
    ),
    (
        "google/api/http.proto",
        include_str!("google/api/http.proto"),
    ),
    (
        "google/api/client.proto",
        include_str!("google/api/client.proto"),
    ),
    (
        "google/api/field_behavior.proto",
        include_str!("google/api/field_behavior.proto"),
    ),
    (
        "google/api/resource.proto",
        include_str!("google/api/resource.proto"),
    ),
    (
        "google/api/launch_stage.proto",
        include_str!("google/api/launch_stage.proto"),
    ),
];

struct Bundled;

impl FileResolver for Bundled {
    fn open_file(&self, name: &str) -> std::result::Result<File, protox::Error> {
        match BUNDLED.iter().find(|(n, _)| *n == name) {
            Some((name, source)) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Reads the services of the `.proto` file at `path`, with imports looked up in `includes`
/// (the file's folder when there are none). Files are read only from the include folders and
/// the canonical folders `allowed` (`--allow-ref-dir`), symlinks resolved.
pub fn read(
    path: &Path,
    includes: &[PathBuf],
    allowed: &[PathBuf],
    options: &ReadOptions,
) -> Result<Api> {
    let includes: Vec<PathBuf> = if includes.is_empty() {
        vec![path.parent().unwrap_or(Path::new(".")).to_owned()]
    } else {
        includes.to_vec()
    };
    let mut permitted: Vec<PathBuf> = includes
        .iter()
        .filter_map(|i| std::fs::canonicalize(i).ok())
        .collect();
    permitted.extend(allowed.iter().cloned());
    let mut resolver = ChainFileResolver::new();
    // The well-known types as protox knows them first: copies of descriptor.proto in include
    // folders are often newer than the syntax any compiler but protoc's latest reads, and the
    // types are the same.
    resolver.add(GoogleFileResolver::new());
    let editions = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    resolver.add(editions::AsProto3 {
        includes: includes.clone(),
        read: editions.clone(),
        permitted,
        root: std::fs::canonicalize(path).ok(),
    });
    resolver.add(Bundled);
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler
        .open_file(path)
        .map_err(|err| compile_error(path, &includes, &err))?;
    let pool = compiler.descriptor_pool();
    let name = compiler
        .files()
        .find(|f| !f.is_import())
        .map(|f| f.name().to_owned())
        .unwrap_or_default();
    let file = pool
        .get_file_by_name(&name)
        .ok_or_else(|| Error::NotOpenApi {
            path: path.to_owned(),
            reason: "the file compiled, but its descriptor is missing".into(),
        })?;
    let mut api = Reader::new(&pool, &file).read(options)?;
    let rewritten = editions.lock().map(|e| e.clone()).unwrap_or_default();
    for (name, edition) in rewritten {
        api.notes.insert(
            0,
            format!(
                "{name} is edition {edition}, read as proto3 (features are dropped: presence, closed enums and defaults follow proto3; the JSON mapping is the same)"
            ),
        );
    }
    Ok(api)
}

/// A protox error as the generator's: file, line and column when it has them.
fn compile_error(path: &Path, includes: &[PathBuf], err: &protox::Error) -> Error {
    // protox quotes names and tokens of the file; they are cut to excerpts.
    let mut message = excerpt_quoted(&err.to_string());
    if err.is_file_not_found() {
        let folders: Vec<String> = includes.iter().map(|i| i.display().to_string()).collect();
        message.push_str(&format!(
            " in {}: pass the folder that holds it with -I DIR",
            folders.join(", ")
        ));
    }
    let position = err
        .labels()
        .and_then(|mut labels| labels.next())
        .and_then(|label| {
            let source = err.source_code()?;
            let span = source.read_span(label.inner(), 0, 0).ok()?;
            Some((span.line() + 1, span.column() + 1))
        });
    let file = err
        .file()
        .and_then(|name| {
            includes
                .iter()
                .map(|i| i.join(name))
                .find(|p| p.is_file())
                .or_else(|| Some(PathBuf::from(name)))
        })
        .unwrap_or_else(|| path.to_owned());
    match position {
        Some((line, column)) => Error::Syntax {
            path: file,
            line,
            column,
            message,
        },
        None => Error::NotOpenApi {
            path: file,
            reason: match err.help() {
                Some(help) => format!("{message} ({})", excerpt_quoted(&help.to_string())),
                None => message,
            },
        },
    }
}

struct Reader<'a> {
    pool: &'a DescriptorPool,
    file: &'a FileDescriptor,
    types: types::Types,
    notes: Vec<String>,
}

impl<'a> Reader<'a> {
    fn new(pool: &'a DescriptorPool, file: &'a FileDescriptor) -> Self {
        Self {
            pool,
            file,
            types: types::Types::new(),
            notes: Vec::new(),
        }
    }

    fn read(mut self, options: &ReadOptions) -> Result<Api> {
        // The messages and enums of the file first, in file order, so they get their names.
        for message in self.file.messages() {
            self.types.message(&message);
        }
        for en in self.file.enums() {
            self.types.enumeration(&en);
        }
        let mut operations = Vec::new();
        let mut type_names = Scope::with_reserved(RESERVED_TYPES);
        let mut method_names = Scope::with_reserved(crate::spec::CLIENT_METHODS);
        let mut grpc = false;
        for service in self.file.services() {
            for method in service.methods() {
                if method.is_client_streaming() && method.is_server_streaming() {
                    self.notes.push(format!(
                        "skipped bidirectional streaming method {}/{}: a durable task has one input and one output, and the two streams of a bidirectional call interleave",
                        service.full_name(),
                        method.name(),
                    ));
                    continue;
                }
                if (method.is_client_streaming() || method.is_server_streaming())
                    && http_rule::has_rule(self.pool, &method)
                {
                    self.notes.push(format!(
                        "skipped {} method {}/{}: it has a google.api.http rule, and the streamed HTTP/JSON form of a gateway is not read (without the rule it would be a gRPC task)",
                        streaming_kind(&method),
                        service.full_name(),
                        method.name(),
                    ));
                    continue;
                }
                let op = http_rule::operation(
                    self.pool,
                    &service,
                    &method,
                    &mut self.types,
                    &mut type_names,
                    &mut method_names,
                    &mut self.notes,
                );
                grpc |= op.grpc.is_some();
                operations.push(op);
            }
        }
        if self.file.services().len() == 0 {
            self.notes
                .push("the file defines no service: the crate has types only".to_owned());
        }
        let descriptor = grpc.then(|| self.descriptor_set());
        let (title, description) = match self.file.services().next() {
            Some(service) => (
                service.full_name().to_owned(),
                Some(format!("The services of `{}`.", self.file.name())),
            ),
            None => (self.file.package_name().to_owned(), None),
        };
        let mut api = Api {
            crate_name: options.crate_name.clone(),
            service: snake_ident(&options.crate_name, "service")
                .trim_start_matches("r#")
                .to_owned(),
            title,
            version: String::new(),
            description,
            default_base_url: None,
            types: self.types.into_defs(),
            operations,
            notes: self.notes,
            warnings: Vec::new(),
            grpc_descriptor: descriptor,
            security_schemes: Vec::new(),
        };
        box_recursive_fields(&mut api);
        Ok(api)
    }

    /// The descriptors a gRPC call needs: the file and the files whose types its messages use,
    /// without source info and without the files of options only (`google/api`,
    /// `descriptor.proto`).
    fn descriptor_set(&self) -> Vec<u8> {
        let mut needed = BTreeMap::new();
        let mut stack = vec![self.file.clone()];
        while let Some(file) = stack.pop() {
            if needed.contains_key(file.name()) {
                continue;
            }
            needed.insert(file.name().to_owned(), file.clone());
            stack.extend(file.dependencies().filter(|d| !options_only(d.name())));
        }
        let mut set = prost_types::FileDescriptorSet::default();
        // Dependencies before dependents, as a descriptor pool reads them.
        let mut ordered: Vec<FileDescriptor> = Vec::new();
        fn visit(
            file: &FileDescriptor,
            needed: &BTreeMap<String, FileDescriptor>,
            ordered: &mut Vec<FileDescriptor>,
        ) {
            if ordered.iter().any(|f| f.name() == file.name()) || !needed.contains_key(file.name())
            {
                return;
            }
            for dep in file.dependencies() {
                visit(&dep, needed, ordered);
            }
            ordered.push(file.clone());
        }
        visit(self.file, &needed, &mut ordered);
        for file in ordered {
            let mut proto = file.file_descriptor_proto().clone();
            proto.source_code_info = None;
            proto.dependency.retain(|d| needed.contains_key(d));
            proto.public_dependency.clear();
            proto.weak_dependency.clear();
            set.file.push(proto);
        }
        set.encode_to_vec()
    }
}

/// Files that only define options, which the messages of a call never use.
fn options_only(name: &str) -> bool {
    name.starts_with("google/api/") || name == "google/protobuf/descriptor.proto"
}

fn streaming_kind(method: &MethodDescriptor) -> &'static str {
    match (method.is_client_streaming(), method.is_server_streaming()) {
        (true, true) => "bidirectional streaming",
        (true, false) => "client streaming",
        (false, true) => "server streaming",
        (false, false) => "unary",
    }
}
