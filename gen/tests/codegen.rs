//! Regenerates the checked-in code from `proto/` and fails when it differs, so `gen/` can never
//! drift from the contract. With `RONDO_REGEN=1` (what `make gen` sets) it rewrites the files.

use std::path::{Path, PathBuf};

use prost::Message;

const GENERATED: [&str; 2] = ["rondo.v1.rs", "rondo_descriptor.bin"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn generated_code_matches_proto() {
    let root = workspace_root();
    let proto_dir = root.join("proto");
    let files: Vec<PathBuf> = std::fs::read_dir(proto_dir.join("rondo/v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    let fds = protox::compile(&files, [&proto_dir]).expect("proto files compile");

    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join(GENERATED[1]), fds.encode_to_vec()).unwrap();
    tonic_prost_build::configure()
        .out_dir(out.path())
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
        .expect("code generation succeeds");

    let src = root.join("gen/src");
    let regen = std::env::var_os("RONDO_REGEN").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for name in GENERATED {
        let fresh = std::fs::read(out.path().join(name)).unwrap();
        let checked_in = std::fs::read(src.join(name)).unwrap_or_default();
        if fresh != checked_in {
            if regen {
                std::fs::write(src.join(name), &fresh).unwrap();
            } else {
                stale.push(name);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "gen/src is stale ({stale:?} differ from proto/): run `make gen` and commit the result"
    );
}
