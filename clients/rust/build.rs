//! Generates the FlowHandler messages and gRPC server and client from
//! `../../proto` at build time, into OUT_DIR (nothing generated is committed).
//! protox parses the .proto files in pure Rust, so no system `protoc` is
//! needed; tonic-prost-build emits the code. The descriptor set is kept too,
//! for gRPC server reflection.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let proto = proto_root.join("platica/flows/v1/flows.proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let fds = protox::compile([&proto], [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("flows_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
