//! Generates the gRPC code for both wire protocols; protoc comes from a vendored binary so that
//! a fresh machine needs no system install. The descriptor set of both protos is kept for
//! gRPC server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    // The descriptor set feeds gRPC server reflection (`grpc_ops`).
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("switchboard_descriptor.bin"))
        .build_server(true)
        .build_client(true)
        .compile_protos(
            &["proto/smartivr.proto", "proto/live_call.proto"],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
