//! Generates the FlowHandler protobuf and gRPC code from `proto/` with no system
//! `protoc`: protox parses the .proto files in pure Rust, tonic-prost-build emits
//! the code. The descriptor set is kept in OUT_DIR for gRPC reflection and for
//! `flows-bridge protoset`.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let proto = proto_root.join("platica/flows/v1/flows.proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let fds = protox::compile([&proto], [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("flows_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
