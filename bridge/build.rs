//! Generates the FlowHandler protobuf and gRPC code from `proto/` with no system
//! `protoc`: protox parses the .proto files in pure Rust, tonic-prost-build emits
//! the code. The descriptor set is kept in OUT_DIR for gRPC reflection and for
//! `flows-bridge protoset`. The conformance vectors are embedded for
//! `flows-bridge doctor`.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let proto = proto_root.join("platica/flows/v1/flows.proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let fds = protox::compile([&proto], [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("flows_descriptor.bin"), fds.encode_to_vec())?;

    embed_vectors(&out_dir)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// Writes `vectors.rs`: every file of tests/vectors/{cases,deliveries} as
/// `(file name, contents)`, so the binary carries them.
fn embed_vectors(out_dir: &std::path::Path) -> Result<(), Box<dyn Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../tests/vectors");
    let mut code = String::new();
    for (constant, dir) in [
        ("VECTOR_CASES", "cases"),
        ("VECTOR_DELIVERIES", "deliveries"),
    ] {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        code.push_str(&format!("pub const {constant}: &[(&str, &str)] = &[\n"));
        for file in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let path = fs::canonicalize(&file)?;
            code.push_str(&format!(
                "    ({name:?}, include_str!({:?})),\n",
                path.display().to_string()
            ));
        }
        code.push_str("];\n");
    }
    fs::write(out_dir.join("vectors.rs"), code)?;
    Ok(())
}
